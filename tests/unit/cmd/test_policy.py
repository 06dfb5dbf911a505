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
    assert code == 2 and out == ''
    assert err == 'sparc: error: %s\n' % e.value


def test_invalid_json_lists_every_error(capsys):
    code, out, err = run(capsys, '--format', 'json',
                         'sparc:follow_ipc=maybe', 'sparc:suspend=never')
    assert code == 2 and err == ''
    data = json.loads(out)
    assert data['valid'] is False
    assert data['errors'] == [
        "sparc:follow_ipc='maybe' (instance metadata): expected true or "
        "false",
        "sparc:suspend='never' (instance metadata): expected one of: "
        "scrub, refuse"]


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
