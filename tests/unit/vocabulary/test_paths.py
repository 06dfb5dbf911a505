"""Path rule lists: scopes, presets, deciding paths."""

import pytest

from sparc_nova.vocabulary import InvalidRule
from sparc_nova.vocabulary import paths
from sparc_nova.vocabulary import presets


def selected(items, candidates):
    decider = paths.ScopedRules(paths.parse_items(items)).decider()
    return [p for p in candidates if decider.first(p) is not None]


def test_a_negation_narrows_only_its_scope():
    items = ['scope:flavor', '/root/**', 'scope:instance', '/srv/**', '!*']
    assert selected(items, ['/root/a', '/srv/b']) == ['/root/a']


def test_without_scopes_a_negation_narrows_the_whole_list():
    assert selected(['/root/**', '/srv/**', '!/srv/keep'],
                    ['/root/a', '/srv/b', '/srv/keep/c']) == [
        '/root/a', '/srv/b']


def test_a_presets_negations_narrow_only_the_preset():
    items = ['preset:ssh-private-keys', '/root/.ssh/**']
    assert selected(items, ['/root/.ssh/id_rsa.pub',
                            '/home/a/.ssh/id_rsa.pub']) == [
        '/root/.ssh/id_rsa.pub']


def test_the_scopes_negations_narrow_its_presets():
    assert selected(['preset:tmp', '!/tmp/keep'],
                    ['/tmp/a', '/tmp/keep', '/tmp/keep/b']) == ['/tmp/a']


def test_scopes_without_rules_are_left_out():
    scopes = paths.parse_items(['scope:flavor', '!*', 'scope:image', '/a'])
    assert [s.label for s in scopes] == ['image']
    assert not paths.selects_anything(['scope:flavor', '!*'])
    assert paths.selects_anything(['preset:tmp'])


def test_explain_names_the_negation_that_keeps_a_path():
    decider = paths.ScopedRules(paths.parse_items(
        ['/srv/**', '!/srv/public'], label='instance')).decider()
    [(scope, rule, keeper)] = decider.explain('/srv/public/index.html')
    assert (scope.label, rule.text, keeper.text) == (
        'instance', '/srv/**', '!/srv/public')


@pytest.mark.parametrize('item, reason', [
    ('scope:Flavor', 'a scope label is a lower-case word'),
    ('scope:', 'a scope label is a lower-case word'),
])
def test_bad_scope_labels(item, reason):
    assert reason in paths.check_item(item)
    with pytest.raises(InvalidRule, match=reason):
        paths.parse_items([item])


def test_a_source_may_not_write_scopes():
    assert 'written by the merge' in paths.check_item('scope:flavor',
                                                      allow_scopes=False)


def test_parse_items_refuses_what_is_not_a_string():
    with pytest.raises(InvalidRule):
        paths.parse_items([b'/etc'])


def test_exe_style_cover_matches_the_path_or_a_directory_above():
    import re
    regex = re.compile(paths.glob_to_regex('/opt/app'))
    assert paths.covers(regex, '/opt/app/bin/x')
    assert not paths.covers(regex, '/opt/application')


@pytest.mark.parametrize('name', sorted(presets.PRESETS))
def test_every_preset_glob_is_valid(name):
    for glob in presets.get(name).globs:
        assert paths.check_item(glob) is None, glob
