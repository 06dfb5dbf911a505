"""Rule syntax and decisions."""

import re
import time

import pytest

from sparc_nova.engine.disk import presets
from sparc_nova.engine.disk import rules


def _removed(rule_set, paths):
    return sorted(rule_set.select(paths).removed)


@pytest.mark.parametrize('glob,path,expected', [
    ('/tmp/**', '/tmp/x', True),
    ('/tmp/**', '/tmp/a/b/c', True),
    ('/tmp/**', '/tmp', False),
    ('/home/*/.ssh/id_*', '/home/alice/.ssh/id_rsa', True),
    ('/home/*/.ssh/id_*', '/home/alice/sub/.ssh/id_rsa', False),
    ('**/.bash_history', '/.bash_history', True),
    ('**/.bash_history', '/root/.bash_history', True),
    ('**/.bash_history', '/root/.bash_history.bak', False),
    ('*.kdbx', '/home/a/vault.kdbx', True),
    ('/a/**/z', '/a/z', True),
    ('/a/**/z', '/a/b/c/z', True),
    ('/f?o', '/foo', True),
    ('/f?o', '/f/o', False),
    ('/[ab]x', '/bx', True),
    ('/[!ab]x', '/bx', False),
    ('/[!ab]x', '/cx', True),
    ('/a.b', '/axb', False),
    ('/*', '/.hidden', True),
])
def test_glob(glob, path, expected):
    assert bool(re.match(rules.glob_to_regex(glob), path)) is expected


def test_glob_matching_root_is_refused():
    with pytest.raises(ValueError):
        rules.glob_to_regex('/')


def test_directory_rule_covers_its_tree_not_its_parent():
    r = rules.Rules(['/srv/secret'])
    assert _removed(r, ['/srv', '/srv/secret', '/srv/secret/a',
                        '/srv/secret/b/c', '/srv/other']) == [
        '/srv/secret', '/srv/secret/a', '/srv/secret/b/c']


def test_negation_keeps_path_and_its_tree():
    r = rules.Rules(['/home/*/.ssh/**', '!**/*.pub', '!/home/a/.ssh/keep'])
    assert _removed(r, ['/home/a/.ssh/id_rsa', '/home/a/.ssh/id_rsa.pub',
                        '/home/a/.ssh/keep', '/home/a/.ssh/keep/x']) == [
        '/home/a/.ssh/id_rsa']


def test_held_paths_are_literal():
    r = rules.Rules(held_paths=['/tmp/[x]*'])
    assert _removed(r, ['/tmp/[x]*', '/tmp/x1']) == ['/tmp/[x]*']


def test_held_path_must_be_absolute():
    with pytest.raises(ValueError):
        rules.Rules(held_paths=['tmp/x'])


def test_counts_by_unit():
    r = rules.Rules(['/a/**'], ['tmp'], ['/held'])
    selection = r.select(['/a/1', '/a/2', '/tmp/x', '/var/tmp/y', '/held',
                          '/b'])
    assert selection.counts == {'/a/**': 2, 'preset:tmp': 2, '/held': 1}
    assert selection.kept == ['/b']
    assert r.units == ['/a/**', 'preset:tmp', '/held']


def test_matches_anything_sees_shadowed_rules():
    r = rules.Rules(['/a/**', '/a/b'])
    assert r.matches_anything(['/a/b']) == {'/a/**', '/a/b'}
    assert r.matches_anything(['/c']) == set()
    assert r.matches_anything(['/c'], {'/a/b'}) == {'/a/b'}


def test_selection_of_a_large_tree_is_fast():
    every = rules.Rules(['/srv/x/**'], list(presets.PRESETS))
    paths = ['/usr/share/doc/pkg%d/file%d' % (i // 10, i)
             for i in range(50000)]
    started = time.monotonic()
    selection = every.select(paths)
    unmatched = every.matches_anything(paths, set(selection.counts))
    assert not selection.removed and not unmatched
    assert time.monotonic() - started < 10


def test_needs_a_positive_rule():
    with pytest.raises(ValueError):
        rules.Rules(['!**/*.pub'])


def test_unknown_preset():
    with pytest.raises(ValueError, match='unknown preset'):
        rules.Rules(preset_names=['nope'])


def test_every_preset_compiles_and_is_documented():
    every = rules.Rules(preset_names=list(presets.PRESETS))
    assert len(every.units) == len(presets.PRESETS)
    for preset in presets.PRESETS.values():
        assert preset.description and preset.globs


@pytest.mark.parametrize('preset,removed,kept', [
    ('ssh-private-keys', ['/home/a/.ssh/id_ed25519', '/root/.ssh/id_rsa',
                          '/tmp/ssh-XXXX/agent.1'],
     ['/home/a/.ssh/id_ed25519.pub', '/home/a/.ssh/authorized_keys',
      '/home/a/.ssh/known_hosts']),
    ('shell-history', ['/root/.bash_history',
                       '/home/a/.local/share/fish/fish_history'],
     ['/home/a/.bashrc']),
    ('cloud-init', ['/var/lib/cloud/instances/i-1/user-data.txt',
                    '/var/lib/cloud/instances/i-1/obj.pkl'],
     ['/var/lib/cloud/instances/i-1/boot-finished']),
    ('tmp', ['/tmp/a', '/var/tmp/b/c'], ['/tmp', '/var/tmp']),
    ('browser-profiles', ['/home/a/.mozilla/firefox/x.default/key4.db'],
     ['/home/a/.mozilla/extensions']),
    ('password-managers', ['/home/a/db.kdbx',
                           '/home/a/.password-store/bank.gpg'], []),
])
def test_presets_select_what_they_promise(preset, removed, kept):
    r = rules.Rules(preset_names=[preset])
    assert _removed(r, removed + kept) == sorted(removed)


def test_no_negation_keeps_a_held_path():
    r = rules.Rules(['/srv/**', '!/srv/open'], held_paths=['/srv/open'])
    assert _removed(r, ['/srv/open', '/srv/x']) == ['/srv/open', '/srv/x']


def test_a_negation_narrows_only_its_scope():
    r = rules.Rules(['scope:flavor', '/root/**', 'scope:instance',
                     '/srv/**', '!*'])
    assert _removed(r, ['/root/a', '/srv/b']) == ['/root/a']
    assert r.units == ['/root/**', '/srv/**']


def test_a_presets_negations_do_not_keep_another_rules_paths():
    r = rules.Rules(['/root/.ssh/**'], ['ssh-private-keys'])
    assert _removed(r, ['/root/.ssh/id_rsa.pub', '/home/a/.ssh/x.pub']) == [
        '/root/.ssh/id_rsa.pub']


def test_presets_in_the_rule_list():
    r = rules.Rules(['preset:tmp', '!/tmp/keep'])
    assert _removed(r, ['/tmp/a', '/tmp/keep']) == ['/tmp/a']
    assert r.units == ['preset:tmp']


@pytest.mark.parametrize('glob', ['*', '/*', '**', '**/*', '/srv/[ab'])
def test_whole_file_system_and_malformed_globs_are_refused(glob):
    with pytest.raises(ValueError):
        rules.Rules([glob])
