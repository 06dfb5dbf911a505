"""``sparc checkpoint unseal`` and the sealed state in ``info`` (the seal
command itself needs a real guest: tests/functional/engine/test_seal.py).
"""

import json
import os

from sparc_nova.checkpoint import sealed
from sparc_nova.cmd import sparc
from tests.unit.engine import test_seal as engine_seal

KEY = engine_seal.KEY


def _sealed(tmp_path):
    path = engine_seal.make(tmp_path)
    original = open(path, 'rb').read()
    engine_seal.do_seal(path, free=False)
    key = tmp_path / 'seal.key'
    key.write_bytes(KEY)
    os.chmod(key, 0o600)
    return path, original, str(key)


def test_info_shows_sealed_then_unseal(tmp_path, capsys):
    path, original, key = _sealed(tmp_path)
    assert sparc.main(['checkpoint', 'info', path, '--format', 'json']) == 0
    info = json.loads(capsys.readouterr().out)
    assert info['sealed']['file'] == sealed.sealed_path(path)
    assert info['sealed']['records'] == 4
    assert sparc.main(['checkpoint', 'info', path]) == 0
    assert 'unseal before restoring' in capsys.readouterr().out
    assert sparc.main(['checkpoint', 'unseal', path, '--key-file', key,
                       '--format', 'json']) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result['sealed_file'] == sealed.sealed_path(path)
    assert open(path, 'rb').read() == original
    # The key is nowhere in what the command printed or left behind.
    for text in (captured.out, captured.err):
        assert KEY.hex() not in text
    assert sorted(os.listdir(tmp_path)) == ['seal.key', 'vm.save']
    assert sparc.main(['checkpoint', 'info', path, '--format', 'json']) == 0
    assert json.loads(capsys.readouterr().out)['sealed'] is None


def test_readable_key_file_is_refused(tmp_path, capsys):
    path, _, key = _sealed(tmp_path)
    os.chmod(key, 0o644)
    before = open(path, 'rb').read()
    assert sparc.main(['checkpoint', 'unseal', path, '--key-file',
                       key]) == 2
    assert 'sealing key' in capsys.readouterr().err
    assert open(path, 'rb').read() == before


def test_wrong_key_exit_code(tmp_path, capsys):
    path, _, key = _sealed(tmp_path)
    open(key, 'wb').write(bytes(32))
    before = open(path, 'rb').read()
    assert sparc.main(['checkpoint', 'unseal', path, '--key-file',
                       key]) == 2
    assert 'does not open it' in capsys.readouterr().err
    assert open(path, 'rb').read() == before
    assert os.path.exists(sealed.sealed_path(path))
