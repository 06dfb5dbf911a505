"""``sparc image`` argument handling (no appliance)."""

import json
import subprocess
from unittest import mock

import pytest

from sparc_nova.cmd import image
from sparc_nova.cmd import sparc
from sparc_nova.engine import disk
from sparc_nova import exception


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


def _marked_raw(tmp_path):
    """A 1 MiB raw image holding ``MARKER-XYZ-1`` at byte 5000."""
    img = tmp_path / 'd.raw'
    with open(img, 'wb') as f:
        f.truncate(1 << 20)
        f.seek(5000)
        f.write(b'MARKER-XYZ-1')
    return str(img)


def test_verify_exit_codes(tmp_path, capsys):
    img = _marked_raw(tmp_path)
    assert sparc.main(['image', 'verify', str(img), '--marker',
                       'MARKER-XYZ-1']) == 1
    assert sparc.main(['image', 'verify', str(img), '--marker',
                       'MARKER-ABSENT']) == 0
    assert sparc.main(['image', 'verify', str(img), '--marker', 'ab']) == 2
    assert sparc.main(['image', 'verify', str(tmp_path / 'none'),
                       '--marker', 'MARKER']) == 2


@pytest.fixture
def backed_image(tmp_path):
    """A qcow2 whose backing file is a host file holding a marker."""
    host = tmp_path / 'host.raw'
    with open(host, 'wb') as f:
        f.truncate(1 << 20)
        f.write(b'HOST-MARKER-42')
    path = tmp_path / 'in' / 'overlay.qcow2'
    path.parent.mkdir()
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b',
                    str(host), '-F', 'raw', str(path), '1M'], check=True)
    return str(path), str(host)


def test_scrub_refuses_a_backing_file(tmp_path, capsys, backed_image):
    path, host = backed_image
    out = tmp_path / 'out'
    out.mkdir()
    rc = sparc.main(['image', 'scrub', path, '--output',
                     str(out / 'dst.qcow2'), '--report',
                     str(out / 'r.json'), '--exclude-path', '/tmp/**'])
    assert rc == 2
    err = capsys.readouterr().err
    assert 'refused' in err and host in err
    assert list(out.iterdir()) == []


def _stop_at_scrub(monkeypatch):
    """Replace the scrub by one that records its options and fails."""
    seen = {}

    def scrub_image(src, dst, rules, options, progress=None):
        seen['options'] = options
        raise exception.DiskImageError(src, 'stop here')
    monkeypatch.setattr(disk, 'scrub_image', scrub_image)
    return seen


def test_scrub_passes_the_source_format(tmp_path, monkeypatch):
    seen = _stop_at_scrub(monkeypatch)
    assert sparc.main(['image', 'scrub', 'a.raw', '--output', 'b.qcow2',
                       '--exclude-path', '/tmp/**',
                       '--source-format', 'raw']) == 2
    assert seen['options'].source_format == 'raw'
    assert not seen['options'].allow_backing_chain
    sparc.main(['image', 'scrub', 'a.raw', '--output', 'b.qcow2',
                '--exclude-path', '/tmp/**', '--allow-backing-chain'])
    assert seen['options'].source_format is None
    assert seen['options'].allow_backing_chain


def test_verify_refuses_a_backing_file(capsys, backed_image):
    path, host = backed_image
    assert sparc.main(['image', 'verify', path, '--marker',
                       'HOST-MARKER-42']) == 2
    assert host in capsys.readouterr().err
    # Read as raw, the overlay's own bytes hold no host data.
    assert sparc.main(['image', 'verify', path, '--source-format', 'raw',
                       '--marker', 'HOST-MARKER-42']) == 0


SCRUB = ['image', 'scrub', 'a.raw', '--output', 'b.img',
         '--exclude-path', '/tmp/**']


def test_scrub_image_format(monkeypatch, capsys):
    seen = _stop_at_scrub(monkeypatch)
    assert sparc.main(SCRUB + ['--image-format', 'raw']) == 2
    assert seen['options'].output_format == 'raw'
    assert 'deprecated' not in capsys.readouterr().err


@pytest.mark.parametrize('fmt', image.IMAGE_FORMATS)
def test_scrub_format_image_is_a_deprecated_alias(monkeypatch, capsys, fmt):
    seen = _stop_at_scrub(monkeypatch)
    assert sparc.main(SCRUB + ['--format', fmt]) == 2
    assert seen['options'].output_format == fmt
    err = capsys.readouterr().err
    assert '--format %s is deprecated' % fmt in err
    assert 'use --image-format %s' % fmt in err


def test_scrub_format_is_the_report_format(monkeypatch, capsys):
    parser = sparc.build_parser()
    args = parser.parse_args(SCRUB + ['--format', 'json'])
    assert args.format == 'json' and args.image_format is None
    args = parser.parse_args(SCRUB + ['--format', 'raw', '--format', 'json'])
    assert args.format == 'json' and args.image_format == 'raw'
    args = parser.parse_args(SCRUB)
    assert args.format == 'text' and args.image_format is None


def test_scrub_json_prints_the_report(monkeypatch, capsys):
    report = mock.Mock()
    report.to_dict.return_value = {'verified': True, 'removed': []}
    monkeypatch.setattr(disk, 'scrub_image',
                        lambda *a, **kw: report)
    assert sparc.main(SCRUB + ['--format', 'json']) == 0
    assert json.loads(capsys.readouterr().out) == {'verified': True,
                                                   'removed': []}


@pytest.mark.parametrize('option, warning', [
    ('--format', None),
    ('--output-format', '--output-format is deprecated and will be removed '
                        'in the next release; use --format')])
def test_verify_format_json(tmp_path, capsys, option, warning):
    img = _marked_raw(tmp_path)
    assert sparc.main(['image', 'verify', img, '--marker', 'MARKER-XYZ-1',
                       option, 'json']) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)['found'] == 1
    assert (warning in err) if warning else 'deprecated' not in err


def test_scrub_summary_shows_the_notes():
    r = disk.ScrubReport('s', 'd', 'qcow2')
    r.notes.append('the appliance was started on TCG')
    assert 'Note: the appliance was started on TCG' in image._summary(r)


def _appliance_cli(tmp_path, cache_dir, built, monkeypatch):
    conf_file = tmp_path / 'sparc.conf'
    conf_file.write_text('[sparc]\ndisk_appliance_cache_dir = %s\n'
                         % cache_dir)
    seen = []

    def prepare(cache, supermin_d):
        seen.append((cache, supermin_d))
        return built
    monkeypatch.setattr(image.fast_boot, 'prepare', prepare)
    monkeypatch.setattr(image.appliance, 'supermin_dir', lambda: '/sd')
    rc = sparc.main(['--config-file', str(conf_file), 'image',
                     'appliance'])
    return rc, seen


def test_appliance_is_built_and_named(tmp_path, monkeypatch, capsys):
    rc, seen = _appliance_cli(tmp_path, '/c', '/c/appliance-1', monkeypatch)
    assert rc == 0 and seen == [('/c', '/sd')]
    assert capsys.readouterr().out == '/c/appliance-1\n'


def test_appliance_that_cannot_be_built_fails(tmp_path, monkeypatch,
                                              capsys):
    rc, seen = _appliance_cli(tmp_path, '/c', None, monkeypatch)
    assert rc == 1 and seen == [('/c', '/sd')]
    assert "libguestfs' own appliance" in capsys.readouterr().err


def test_appliance_cache_turned_off(tmp_path, monkeypatch, capsys):
    rc, seen = _appliance_cli(tmp_path, '', '/c/x', monkeypatch)
    assert rc == 1 and seen == []
    assert 'disk_appliance_cache_dir is empty' in capsys.readouterr().err
