"""The privacy policy: every key, every invalid value, the merge."""

import pytest

from sparc_nova import exception
from sparc_nova import policy


def parse(pairs, source=policy.INSTANCE):
    return policy.parse(pairs, source)


def problems(pairs, source=policy.INSTANCE):
    with pytest.raises(exception.InvalidPolicy) as e:
        policy.parse(pairs, source)
    return [str(p) for p in e.value.problems]


def only_problem(pairs, source=policy.INSTANCE):
    found = problems(pairs, source)
    assert len(found) == 1, found
    return found[0]


# -- exclude_processes -----------------------------------------------------


@pytest.mark.parametrize('value, expected', [
    ('keepassxc', ['keepassxc']),
    ('keepassxc,gpg-agent', ['keepassxc', 'gpg-agent']),
    (' keepassxc , gpg-agent ', ['keepassxc', 'gpg-agent']),
    ('Web Content', ['Web Content']),
    ('a' * 15, ['a' * 15]),
    ('exe:/usr/bin/keepassxc', ['exe:/usr/bin/keepassxc']),
    ('exe:/**/bin/gpg*', ['exe:/**/bin/gpg*']),
    ('exe:/opt/My App/bin/app', ['exe:/opt/My App/bin/app']),
    ('pid:2', ['pid:2']),
    ('name:vault', ['name:vault']),
    ('pid:4242', ['pid:4242']),
    ('uid:0', ['uid:0']),
    ('uid:1000', ['uid:1000']),
    ('cgroup:/user.slice/user-1000.slice', ['cgroup:/user.slice/'
                                            'user-1000.slice']),
    ('vault,vault,gpg-agent', ['vault', 'gpg-agent']),
    (r'exe:/opt/a\,b/app', ['exe:/opt/a,b/app']),
])
def test_exclude_processes_valid(value, expected):
    part = parse({'sparc:exclude_processes': value})
    assert part.exclude_processes == expected
    assert part.exclude_paths == []


@pytest.mark.parametrize('value, reason', [
    ('a' * 16, 'at most 15 characters; use exe:GLOB'),
    ('/usr/bin/vault', 'use exe:GLOB for paths'),
    ('usr/bin/vault', 'contains no "/"'),
    ('proc:vault', "unknown selector kind 'proc'; allowed: NAME, exe:GLOB, "
                   "pid:N, uid:N, cgroup:PATH"),
    ('pid:x', "pid: takes a decimal number, not 'x'"),
    ('pid:-1', "pid: takes a decimal number, not '-1'"),
    ('pid:0', 'pid:0 is the idle task, not a process'),
    ('pid:4194305', 'pid: takes a number up to 4194304'),
    ('uid:4294967295', 'uid: takes a number up to 4294967294'),
    ('exe:*/bin/gpg', 'exe: takes an absolute path glob'),
    ('weird:thing', "unknown selector kind 'weird'"),
    ('pid:007', "pid: takes a decimal number, not '007'"),
    ('pid:', "pid: takes a decimal number, not ''"),
    ('uid:root', "uid: takes a decimal number, not 'root'"),
    ('uid:1.5', "uid: takes a decimal number, not '1.5'"),
    ('exe:', 'exe: needs a path'),
    ('exe:bin/vault', 'exe: takes an absolute path glob'),
    ('cgroup:', 'cgroup: needs a path'),
    ('cgroup:user.slice', "selector 'cgroup:user.slice': a cgroup path "
                          "starts with /"),
    ('pid:1', 'refusing pid:1: killing init panics the guest'),
    ('name:' + 'a' * 16, 'at most 15 characters'),
    ('name:', 'name: needs a process name'),
    ('vault,,gpg', 'an empty item'),
    ('vault,', 'an empty item'),
    (',vault', 'an empty item'),
    ('', 'an empty item'),
    ('   ', 'an empty item'),
])
def test_exclude_processes_invalid(value, reason):
    message = only_problem({'sparc:exclude_processes': value})
    assert message.startswith("sparc:exclude_processes=%r (instance "
                              "metadata): " % value)
    assert reason in message


# -- exclude_paths ---------------------------------------------------------


@pytest.mark.parametrize('value, expected', [
    ('/home/*/.ssh/**', ['/home/*/.ssh/**']),
    ('/root/.bash_history,/tmp/**', ['/root/.bash_history', '/tmp/**']),
    ('/home/**/id_*,!/home/**/*.pub', ['/home/**/id_*', '!/home/**/*.pub']),
    ('/srv/a b/secret', ['/srv/a b/secret']),
    ('*.kdbx', ['*.kdbx']),
    ('**/id_rsa', ['**/id_rsa']),
    ('.ssh/id_*', ['.ssh/id_*']),
    ('/home/**', ['/home/**']),
    ('!*.pub', ['!*.pub']),
    ('!**', ['!**']),
    ('!*', ['!*']),
    ('/srv/[[]x', ['/srv/[[]x']),
    ('preset:ssh-private-keys,/srv/x', ['preset:ssh-private-keys', '/srv/x']),
    (r'/srv/x\,y', ['/srv/x,y']),
    (r'/srv/back\\slash', ['/srv/back\\slash']),
])
def test_exclude_paths_valid(value, expected):
    assert parse({'sparc:exclude_paths': value}).exclude_paths == expected


@pytest.mark.parametrize('value, reason', [
    ('/', 'names the root directory'),
    ('!/', 'names the root directory'),
    ('//', 'names the root directory'),
    ('/**', 'covers the whole file system'),
    ('**', 'covers the whole file system'),
    ('/**/**', 'covers the whole file system'),
    ('*', 'covers the whole file system'),
    ('/*', 'covers the whole file system'),
    ('**/*', 'covers the whole file system'),
    ('/*/?', 'covers the whole file system'),
    ('/[a-z]*', 'covers the whole file system'),
    ('/srv/[ab', 'an unclosed "["'),
    ('scope:flavor', 'scope: items are written by the merge'),
    ('../etc/shadow', 'no "." or ".." components'),
    ('/home/../etc/shadow', 'no "." or ".." components'),
    ('/home/./x', 'no "." or ".." components'),
    ('/home/a**', '"**" must be a whole path component'),
    ('/home/**b/c', '"**" must be a whole path component'),
    ('/a,,/b', 'an empty item'),
    ('/a\0b', 'contains no NUL character'),
    ('preset:nope', "unknown preset 'nope'; presets: browser-profiles, "),
    ('!preset:tmp', 'a preset cannot be negated'),
])
def test_exclude_paths_invalid(value, reason):
    message = only_problem({'sparc:exclude_paths': value})
    assert message.startswith('sparc:exclude_paths=')
    assert reason in message


def test_expand_presets():
    from sparc_nova.engine.disk import presets
    expanded = policy.expand_presets(['/a', 'preset:tmp', '/a'])
    assert expanded == ['/a'] + list(presets.get('tmp').globs)


def test_split_presets():
    assert policy.split_presets(['/a', 'preset:tmp', '!/a/b',
                                 'preset:gnupg']) == (
        ['/a', '!/a/b'], ['tmp', 'gnupg'])


# -- booleans and choices --------------------------------------------------


@pytest.mark.parametrize('key', policy.BOOL_KEYS)
@pytest.mark.parametrize('value, expected', [
    ('true', True), ('false', False), ('True', True), ('FALSE', False),
    (' true ', True),
])
def test_bool_keys_valid(key, value, expected):
    assert parse({'sparc:' + key: value}).settings == {key: expected}


@pytest.mark.parametrize('key', policy.BOOL_KEYS)
@pytest.mark.parametrize('value', ['yes', 'no', '1', '0', 'on', '', 'truee',
                                   't'])
def test_bool_keys_invalid(key, value):
    assert only_problem({'sparc:' + key: value}) == (
        'sparc:%s=%r (instance metadata): expected true or false'
        % (key, value))


@pytest.mark.parametrize('key, value', [
    ('on_failure', 'abort'), ('on_failure', 'allow'),
    ('suspend', 'scrub'), ('suspend', 'refuse'), ('suspend', 'Refuse'),
    ('suspend', 'seal'), ('suspend', 'Seal'),
])
def test_choice_keys_valid(key, value):
    assert parse({'sparc:' + key: value}).settings == {key: value.lower()}


@pytest.mark.parametrize('key, value, allowed', [
    ('on_failure', 'ignore', 'abort, allow'),
    ('on_failure', '', 'abort, allow'),
    ('on_failure', 'true', 'abort, allow'),
    ('suspend', 'allow', 'scrub, refuse, seal'),
    ('suspend', 'no', 'scrub, refuse, seal'),
    ('suspend', '', 'scrub, refuse, seal'),
])
def test_choice_keys_invalid(key, value, allowed):
    assert only_problem({'sparc:' + key: value}) == (
        'sparc:%s=%r (instance metadata): expected one of: %s'
        % (key, value, allowed))


# -- keys, sources, lengths ------------------------------------------------


@pytest.mark.parametrize('key', [
    'sparc:exclude_process', 'sparc:excludes_paths', 'sparc:', 'sparc:x',
    'sparc:EXCLUDE_PATHS'])
def test_unknown_keys(key):
    message = only_problem({key: 'x'})
    assert 'unknown key; known keys: sparc:exclude_processes, ' in message


def test_other_keys_are_ignored():
    part = parse({'hw:cpu_policy': 'dedicated', 'sparcfoo': 'x',
                  'sparc_exclude_paths': 'not for instances',
                  'sparc:exclude_paths': '/x'})
    assert part.exclude_paths == ['/x']


def test_image_source_uses_underscore_prefix():
    part = parse({'sparc_exclude_processes': 'vault',
                  'sparc_follow_ipc': 'false',
                  'sparc:exclude_paths': '/ignored'}, policy.IMAGE)
    assert part.exclude_processes == ['vault']
    assert part.exclude_paths == []
    assert part.settings == {'follow_ipc': False}


def test_image_record_properties_are_not_policy():
    part = parse({'sparc_scrubbed': 'true',
                  'sparc_policy_digest': 'sha256:00',
                  'sparc_scrub_summary': 'whatever'}, policy.IMAGE)
    assert part.is_empty()


def test_image_unknown_key():
    message = only_problem({'sparc_exclude': '/x'}, policy.IMAGE)
    assert message.startswith("sparc_exclude='/x' (image property): "
                              "unknown key; known keys: "
                              "sparc_exclude_processes")


def test_flavor_source_named_in_messages():
    assert only_problem({'sparc:follow_ipc': 'x'}, policy.FLAVOR) == (
        "sparc:follow_ipc='x' (flavor extra spec): expected true or false")


def test_values_longer_than_nova_allows():
    value = '/' + 'a' * 255
    message = only_problem({'sparc:exclude_paths': value})
    assert 'longer than 255 characters; split it with numbered ' \
           'continuation keys (sparc:exclude_paths.1, ...)' in message


def test_image_values_that_nova_may_have_truncated():
    value = '/' + 'a' * 254
    assert len(value) == 255
    parse({'sparc:exclude_paths': value})    # fine from the API
    message = only_problem({'sparc_exclude_paths': value}, policy.IMAGE)
    assert 'Nova truncates image properties to 255 bytes' in message
    # Bytes count, not characters.
    wide = '/' + '\u00e9' * 127
    assert len(wide) < 255 <= len(wide.encode())
    assert 'may be incomplete' in only_problem(
        {'sparc_exclude_paths': wide}, policy.IMAGE)


def test_non_string_value():
    assert 'values are strings' in only_problem(
        {'sparc:follow_ipc': True})


def test_all_problems_reported_at_once():
    found = problems({'sparc:follow_ipc': 'maybe',
                      'sparc:suspend': 'never',
                      'sparc:exclude_paths': '/a/../b',
                      'sparc:nope': '1'})
    assert len(found) == 4


def test_unknown_source():
    with pytest.raises(ValueError):
        policy.parse({}, 'tenant')


# -- continuation keys -----------------------------------------------------


def test_continuation_keys_append_in_numeric_order():
    part = parse({'sparc:exclude_paths.10': '/k',
                  'sparc:exclude_paths': '/a,/b',
                  'sparc:exclude_paths.2': '/c',
                  'sparc:exclude_paths.1': '/b,/d',
                  **{'sparc:exclude_paths.%d' % n: '/n%d' % n
                     for n in range(3, 10)}})
    assert part.exclude_paths == (['/a', '/b', '/d', '/c'] +
                                  ['/n%d' % n for n in range(3, 10)] +
                                  ['/k'])


def test_continuation_keys_for_processes_and_images():
    part = parse({'sparc_exclude_processes': 'a',
                  'sparc_exclude_processes.1': 'b'}, policy.IMAGE)
    assert part.exclude_processes == ['a', 'b']


@pytest.mark.parametrize('pairs, reason', [
    ({'sparc:exclude_paths.1': '/a'},
     'numbered without gaps, but sparc:exclude_paths is missing'),
    ({'sparc:exclude_paths': '/a', 'sparc:exclude_paths.2': '/b'},
     'numbered without gaps, but sparc:exclude_paths.1 is missing'),
    ({'sparc:exclude_paths': '/a', 'sparc:exclude_paths.01': '/b'},
     'numbered 1, 2, ... up to 99, without leading zeros'),
    ({'sparc:exclude_paths': '/a', 'sparc:exclude_paths.0': '/b'},
     'numbered 1, 2, ... up to 99, without leading zeros'),
    ({'sparc:exclude_paths': '/a', 'sparc:exclude_paths.x': '/b'},
     'numbered 1, 2, ... up to 99, without leading zeros'),
    ({'sparc:exclude_paths': '/a', 'sparc:exclude_paths.100': '/b'},
     'continuation numbers go up to 99'),
    ({'sparc:follow_ipc.1': 'true'},
     'only sparc:exclude_processes and sparc:exclude_paths take '
     'continuation keys'),
    ({'sparc:nope.1': 'x'}, 'unknown key'),
])
def test_continuation_keys_invalid(pairs, reason):
    assert reason in only_problem(pairs)


def test_continuation_item_errors_name_the_continuation_key():
    message = only_problem({'sparc:exclude_paths': '/a',
                            'sparc:exclude_paths.1': '/..'})
    assert message.startswith("sparc:exclude_paths.1='/..'")


# -- lists -----------------------------------------------------------------


def test_split_and_join_list_round_trip():
    items = ['a', 'b,c', 'd\\e', 'f\\,g']
    assert policy.split_list(policy.join_list(items)) == items
    assert policy.split_list('a\\') == ['a\\']


# -- merging ---------------------------------------------------------------


def merged(flavor=None, image=None, instance=None, allow_from=('flavor',)):
    return policy.from_sources(flavor, image, instance,
                               on_failure_allow_from=allow_from)


def test_empty_policy_excludes_nothing():
    p = merged()
    assert not p.excludes_anything
    assert p.effective() == {
        'exclude_processes': [], 'exclude_paths': [], 'path_rules': [],
        'follow_ipc': True,
        'scrub_free_memory': True, 'on_failure': 'abort',
        'suspend': 'scrub'}
    assert p.origins['follow_ipc'] == ['default']


def test_lists_are_united_with_their_origins():
    p = merged(flavor={'sparc:exclude_processes': 'gpg-agent'},
               image={'sparc_exclude_paths': '/etc/ssl/private/**'},
               instance={'sparc:exclude_processes': 'keepassxc,gpg-agent',
                         'sparc:exclude_paths': '/home/*/.ssh/**'})
    assert p.exclude_processes == ['gpg-agent', 'keepassxc']
    assert p.exclude_paths == ['/etc/ssl/private/**', '/home/*/.ssh/**']
    assert p.origins['exclude_processes'] == {
        'gpg-agent': ['flavor', 'instance'], 'keepassxc': ['instance']}
    assert p.excludes_anything


def test_tenant_cannot_relax_booleans():
    p = merged(flavor={'sparc:follow_ipc': 'true'},
               instance={'sparc:follow_ipc': 'false',
                         'sparc:scrub_free_memory': 'false'})
    assert p.follow_ipc is True
    assert p.origins['follow_ipc'] == ['flavor']
    # No one else set scrub_free_memory: the tenant's choice stands.
    assert p.scrub_free_memory is False
    assert p.origins['scrub_free_memory'] == ['instance']


def test_tenant_can_tighten_booleans():
    p = merged(flavor={'sparc:scrub_free_memory': 'false'},
               instance={'sparc:scrub_free_memory': 'true'})
    assert p.scrub_free_memory is True


def test_suspend_refuse_wins():
    p = merged(flavor={'sparc:suspend': 'scrub'},
               instance={'sparc:suspend': 'refuse'})
    assert p.suspend == 'refuse'
    assert p.origins['suspend'] == ['instance']
    p = merged(image={'sparc_suspend': 'refuse'},
               instance={'sparc:suspend': 'scrub'})
    assert p.suspend == 'refuse'


def test_suspend_default_is_scrub():
    p = merged(instance={'sparc:exclude_processes': 'vault'})
    assert p.suspend == 'scrub'
    assert p.origins['suspend'] == ['default']
    assert p.refused == []


def test_suspend_seal_from_any_source():
    for source, key in (('flavor', 'sparc:suspend'),
                        ('image', 'sparc_suspend'),
                        ('instance', 'sparc:suspend')):
        p = merged(**{source: {key: 'seal'}})
        assert p.suspend == 'seal'
        assert p.origins['suspend'] == [source]
        assert p.refused == []


@pytest.mark.parametrize('above, below, winner', [
    ('scrub', 'seal', 'scrub'), ('refuse', 'seal', 'refuse'),
])
def test_suspend_seal_cannot_weaken_a_source_above(above, below, winner):
    p = merged(flavor={'sparc:suspend': above},
               instance={'sparc:suspend': below})
    assert p.suspend == winner
    assert p.origins['suspend'] == ['flavor']
    assert [str(r) for r in p.refused] == [
        'sparc:suspend=seal (instance metadata): the flavor extra spec '
        'requires suspend=%s' % above]


@pytest.mark.parametrize('below', ['scrub', 'refuse'])
def test_suspend_a_source_below_may_tighten_a_seal(below):
    p = merged(image={'sparc_suspend': 'seal'},
               instance={'sparc:suspend': below})
    assert p.suspend == below
    assert p.origins['suspend'] == ['instance']
    assert p.refused == []


def test_suspend_every_weaker_value_below_is_refused():
    p = merged(flavor={'sparc:suspend': 'refuse'},
               image={'sparc_suspend': 'seal'},
               instance={'sparc:suspend': 'scrub'})
    assert p.suspend == 'refuse'
    assert [str(r) for r in p.refused] == [
        'sparc_suspend=seal (image property): the flavor extra spec '
        'requires suspend=refuse',
        'sparc:suspend=scrub (instance metadata): the flavor extra spec '
        'requires suspend=refuse']
    # The nearest stricter source above is named.
    p = merged(flavor={'sparc:suspend': 'seal'},
               image={'sparc_suspend': 'scrub'},
               instance={'sparc:suspend': 'seal'})
    assert p.suspend == 'scrub'
    assert p.origins['suspend'] == ['image']
    assert [str(r) for r in p.refused] == [
        'sparc:suspend=seal (instance metadata): the image property '
        'requires suspend=scrub']


def test_on_failure_allow_from_permitted_source():
    p = merged(flavor={'sparc:on_failure': 'allow'})
    assert p.on_failure == 'allow'
    assert p.allows_unscrubbed
    assert p.refused == []


def test_on_failure_allow_refused_by_configuration():
    p = merged(instance={'sparc:on_failure': 'allow'})
    assert p.on_failure == 'abort'
    assert p.origins['on_failure'] == ['default']
    assert [str(r) for r in p.refused] == [
        'sparc:on_failure=allow (instance metadata): the configuration '
        '([sparc] on_failure_allow_from) does not let the instance '
        'metadata choose it']


def test_on_failure_allow_refused_by_flavor():
    p = merged(flavor={'sparc:on_failure': 'abort'},
               instance={'sparc:on_failure': 'allow'},
               allow_from=('flavor', 'instance'))
    assert p.on_failure == 'abort'
    assert p.origins['on_failure'] == ['flavor']
    assert [str(r) for r in p.refused] == [
        'sparc:on_failure=allow (instance metadata): the flavor extra spec '
        'requires on_failure=abort']


def test_on_failure_allow_from_tenant_when_configured():
    p = merged(instance={'sparc:on_failure': 'allow'},
               allow_from=('instance',))
    assert p.on_failure == 'allow'
    assert p.origins['on_failure'] == ['instance']


def test_on_failure_allow_nobody_when_configured_empty():
    p = merged(flavor={'sparc:on_failure': 'allow'}, allow_from=())
    assert p.on_failure == 'abort'
    assert len(p.refused) == 1


def test_digest_covers_effective_settings_only():
    a = merged(flavor={'sparc:exclude_processes': 'vault'})
    b = merged(instance={'sparc:exclude_processes': 'vault'})
    c = merged(instance={'sparc:exclude_processes': 'vault',
                         'sparc:follow_ipc': 'false'})
    assert a.digest == b.digest != c.digest
    assert a.digest.startswith('sha256:') and len(a.digest) == 71
    assert a.to_dict()['digest'] == a.digest


def test_from_sources_reports_every_source():
    with pytest.raises(exception.InvalidPolicy) as e:
        merged(flavor={'sparc:follow_ipc': 'x'},
               image={'sparc_suspend': 'x'},
               instance={'sparc:on_failure': 'x'})
    text = str(e.value)
    assert text.startswith('invalid privacy policy: ')
    for where in ('flavor extra spec', 'image property',
                  'instance metadata'):
        assert where in text


def test_merge_refuses_two_parts_of_one_source():
    with pytest.raises(ValueError):
        policy.merge([policy.PolicyPart('flavor'),
                      policy.PolicyPart('flavor')])
