"""``sparc policy check``: the same validation as the driver, offline."""

import json

import pytest

from sparc_nova.cmd import sparc
from sparc_nova import exception
from sparc_nova import policy


def run(capsys, *argv):
    code = sparc.main(['policy', 'check'] + list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_valid_policy_text(capsys):
    code, out, err = run(capsys, 'sparc:exclude_processes=keepassxc,vault',
                         'sparc:exclude_paths=/home/*/.ssh/**')
    assert code == 0 and err == ''
    assert out.startswith('valid policy sha256:')
    assert 'exclude_processes  keepassxc  [instance]' in out
    assert 'exclude_paths      /home/*/.ssh/**  [instance]' in out
    assert 'on_failure         abort  [default]' in out


def test_valid_policy_json_matches_the_library(capsys):
    pairs = {'sparc:exclude_processes': 'vault', 'sparc:follow_ipc': 'false'}
    code, out, _ = run(capsys, '--format', 'json',
                       *['%s=%s' % kv for kv in pairs.items()])
    assert code == 0
    data = json.loads(out)
    expected = policy.from_sources(instance=pairs).to_dict()
    assert data.pop('valid') is True
    assert (data.pop('paths'), data.pop('processes')) == ([], [])
    assert data == json.loads(json.dumps(expected))


def test_value_may_contain_equals(capsys):
    code, out, _ = run(capsys, '--format', 'json',
                       'sparc:exclude_paths=/srv/a=b')
    assert code == 0
    assert json.loads(out)['exclude_paths'] == ['/srv/a=b']


@pytest.mark.parametrize('pair', [
    'sparc:follow_ipc=maybe', 'sparc:suspend=never',
    'sparc:on_failure=ignore', 'sparc:exclude_paths=/**',
    'sparc:exclude_processes=pid:x', 'sparc:nope=1',
    'sparc:exclude_paths.1=/a'])
def test_invalid_text_has_the_drivers_message(capsys, pair):
    key, _, value = pair.partition('=')
    with pytest.raises(exception.InvalidPolicy) as e:
        policy.parse({key: value}, policy.INSTANCE)
    code, out, err = run(capsys, pair)
    assert code == 1 and err == ''
    assert out.splitlines()[1:] == ['  problem: %s' % p
                                    for p in e.value.problems]
    assert out.splitlines()[1:] == [
        '  problem: %s' % p
        for p in policy.validate_source({key: value}, policy.INSTANCE)]


def test_invalid_json_lists_every_error(capsys):
    code, out, err = run(capsys, '--format', 'json',
                         'sparc:follow_ipc=maybe', 'sparc:suspend=never')
    assert code == 1 and err == ''
    data = json.loads(out)
    assert data['valid'] is False
    assert data['errors'] == [
        "sparc:follow_ipc='maybe' (instance metadata): expected true or "
        "false",
        "sparc:suspend='never' (instance metadata): expected one of: "
        "scrub, refuse, seal"]


def test_sources_merge(capsys):
    code, out, _ = run(capsys, '--format', 'json',
                       '--flavor', 'sparc:follow_ipc=true',
                       '--image', 'sparc_exclude_paths=/etc/ssl/private/**',
                       'sparc:follow_ipc=false',
                       'sparc:exclude_processes=vault')
    assert code == 0
    data = json.loads(out)
    assert data['follow_ipc'] is True
    assert data['origins']['follow_ipc'] == ['flavor']
    assert data['exclude_paths'] == ['/etc/ssl/private/**']


def test_source_option_reads_pairs_as_image_properties(capsys):
    code, out, _ = run(capsys, '--format', 'json', '--source', 'image',
                       'sparc_exclude_processes=vault')
    assert code == 0
    assert json.loads(out)['origins']['exclude_processes'] == {
        'vault': ['image']}


def test_suspend_seal_shown_and_its_refusal_listed(capsys):
    code, out, _ = run(capsys, 'sparc:suspend=seal')
    assert code == 0
    assert 'suspend            seal  [instance]' in out
    code, out, _ = run(capsys, '--flavor', 'sparc:suspend=scrub',
                       'sparc:suspend=seal')
    assert code == 0
    assert 'suspend            scrub  [flavor]' in out
    assert ('refused: sparc:suspend=seal (instance metadata): the flavor '
            'extra spec requires suspend=scrub') in out


def test_on_failure_allow_follows_configuration(capsys, tmp_path):
    code, out, _ = run(capsys, 'sparc:on_failure=allow')
    assert code == 0
    assert 'on_failure         abort  [default]' in out
    assert ('refused: sparc:on_failure=allow (instance metadata): the '
            'configuration ([sparc] on_failure_allow_from) does not let '
            'the instance metadata choose it') in out

    conf = tmp_path / 'sparc.conf'
    conf.write_text('[sparc]\non_failure_allow_from = flavor,instance\n')
    code, out, _ = run(capsys, '--format', 'json', 'sparc:on_failure=allow')
    assert json.loads(out)['on_failure'] == 'abort'
    code = sparc.main(['--config-file', str(conf), 'policy', 'check',
                       '--format', 'json', 'sparc:on_failure=allow'])
    out, _ = capsys.readouterr()
    assert code == 0
    assert json.loads(out)['on_failure'] == 'allow'


def test_empty_policy_says_nothing_is_scrubbed(capsys):
    code, out, _ = run(capsys)
    assert code == 0
    assert '(excludes nothing: checkpoints are not scrubbed)' in out


@pytest.mark.parametrize('argv, message', [
    (['novalue'], "'novalue' is not KEY=VALUE"),
    (['=x'], "'=x' is not KEY=VALUE"),
    (['sparc:suspend=scrub', 'sparc:suspend=refuse'],
     'sparc:suspend is given twice'),
    (['--instance', 'sparc:suspend=scrub', 'sparc:suspend=refuse'],
     'sparc:suspend is given twice'),
])
def test_bad_arguments(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err


def test_validate_source_of_a_valid_source_is_empty():
    assert policy.validate_source({'sparc:follow_ipc': 'true',
                                   'hw:cpu_policy': 'dedicated'},
                                  policy.FLAVOR) == []
    assert policy.validate_source({'sparc_follow_ipc': 'x'},
                                  policy.IMAGE) == [
        "sparc_follow_ipc='x' (image property): expected true or false"]


FLAVOR = ['--flavor', 'sparc:exclude_paths=/root/.ssh/**,!/root/.ssh/*.pub',
          '--flavor', 'sparc:exclude_processes=vault']


def test_paths_say_whether_and_by_whom(capsys):
    code, out, _ = run(capsys, '--format', 'json', *FLAVOR,
                       '--instance', 'sparc:exclude_paths=/srv/**,!*',
                       '--image', 'sparc_exclude_paths=/root/**',
                       '--path', '/root/.ssh/id_rsa',
                       '--path', '/root/.ssh/id_rsa.pub',
                       '--path', '/srv/x', '--path', '/etc/passwd')
    assert code == 0
    data = json.loads(out)
    assert [(p['path'], p['excluded'], p['by']) for p in data['paths']] == [
        ('/root/.ssh/id_rsa', True, ['flavor', 'image']),
        ('/root/.ssh/id_rsa.pub', False, []),
        ('/srv/x', False, []),
        ('/etc/passwd', False, [])]
    assert data['paths'][1]['rules'] == [
        {'source': 'flavor', 'rule': '/root/.ssh/**',
         'kept_by': '!/root/.ssh/*.pub'},
        {'source': 'image', 'rule': '/root/**',
         'kept_by': '!/root/.ssh/*.pub'}]
    assert data['paths'][2]['rules'] == [
        {'source': 'instance', 'rule': '/srv/**', 'kept_by': '!*'}]


def test_paths_as_text(capsys):
    code, out, _ = run(capsys, *FLAVOR, 'sparc:exclude_paths=!*',
                       '--path', '/root/.ssh/id_rsa',
                       '--path', '/root/.ssh/id_rsa.pub', '--path', '/x')
    assert code == 0
    assert out.splitlines()[-3:] == [
        'path /root/.ssh/id_rsa: excluded by flavor (/root/.ssh/**)',
        'path /root/.ssh/id_rsa.pub: kept (flavor rule /root/.ssh/** is '
        'narrowed by !/root/.ssh/*.pub)',
        'path /x: kept (no rule names it)']


def test_presets_are_named_as_the_rule(capsys):
    code, out, _ = run(capsys, '--format', 'json',
                       'sparc:exclude_paths=preset:tmp',
                       '--path', '/tmp/a')
    assert json.loads(out)['paths'][0]['rules'] == [
        {'source': 'instance', 'rule': 'preset:tmp', 'kept_by': None}]


def test_processes_say_whether_and_by_whom(capsys):
    code, out, _ = run(capsys, '--format', 'json', *FLAVOR,
                       'sparc:exclude_processes=exe:/usr/bin/**,vault',
                       '--process', 'name=vault,pid=42',
                       '--process', 'name=x,exe=/usr/bin/x,uid=0',
                       '--process', 'name=vault,pid=1',
                       '--process', 'name=sshd')
    assert code == 0
    found = [(p['process'], p['excluded'], p['by'])
             for p in json.loads(out)['processes']]
    assert found == [('name=vault,pid=42', True, ['flavor', 'instance']),
                     ('name=x,exe=/usr/bin/x,uid=0', True, ['instance']),
                     ('name=vault,pid=1', False, []),
                     ('name=sshd', False, [])]
    code, out, _ = run(capsys, *FLAVOR, '--process', 'name=vault')
    assert out.splitlines()[-1] == (
        'process name=vault: excluded by flavor (vault)')


def test_refusals_are_listed_and_the_policy_stays_valid(capsys):
    code, out, _ = run(capsys, *FLAVOR, 'sparc:follow_ipc=false')
    assert code == 0
    assert ('refused: sparc:follow_ipc=false (instance metadata): it would '
            'weaken what the flavor extra spec excludes; only that source '
            'can set it to false') in out


@pytest.mark.parametrize('argv, message', [
    (['--path', 'etc/passwd'], "--path 'etc/passwd' is not an absolute"),
    (['--process', 'pid=x'], "--process 'pid=x': pid takes a number"),
    (['--process', 'colour=red'], "'colour=red' is not FIELD=VALUE"),
    (['--process', 'pid=1,pid=2'], 'pid is given twice'),
])
def test_bad_path_or_process(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ''
    assert message in err
