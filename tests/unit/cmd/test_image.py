"""``sparc image`` argument handling (no appliance)."""

import pytest

from sparc_nova.cmd import image
from sparc_nova.cmd import sparc


def test_luks_keys(tmp_path):
    key = tmp_path / 'k'
    key.write_bytes(b'pass phrase\n')
    assert image._luks_keys(['/dev/sda2:%s' % key,
                             'UUID=ab-cd:%s' % key]) == {
        '/dev/sda2': 'pass phrase', 'UUID=ab-cd': 'pass phrase'}


@pytest.mark.parametrize('spec', ['/dev/sda2', ':k', '/dev/sda2:'])
def test_luks_key_syntax(spec):
    with pytest.raises(image.UsageError):
        image._luks_keys([spec])


def test_luks_key_unreadable(tmp_path):
    with pytest.raises(image.UsageError, match='cannot read'):
        image._luks_keys(['/dev/sda1:%s' % (tmp_path / 'missing')])


def test_scrub_needs_a_rule(tmp_path, capsys):
    rc = sparc.main(['image', 'scrub', str(tmp_path / 'a.qcow2'),
                     '--output', str(tmp_path / 'b.qcow2')])
    assert rc == 2
    assert 'no rule selects anything' in capsys.readouterr().err


def test_presets_listed(capsys):
    assert sparc.main(['image', 'presets']) == 0
    out = capsys.readouterr().out
    assert 'ssh-private-keys:' in out and '/tmp/**' in out


def test_verify_exit_codes(tmp_path, capsys):
    img = tmp_path / 'd.raw'
    with open(img, 'wb') as f:
        f.truncate(1 << 20)
        f.seek(5000)
        f.write(b'MARKER-XYZ-1')
    assert sparc.main(['image', 'verify', str(img), '--marker',
                       'MARKER-XYZ-1']) == 1
    assert sparc.main(['image', 'verify', str(img), '--marker',
                       'MARKER-ABSENT']) == 0
    assert sparc.main(['image', 'verify', str(img), '--marker', 'ab']) == 2
    assert sparc.main(['image', 'verify', str(tmp_path / 'none'),
                       '--marker', 'MARKER']) == 2
