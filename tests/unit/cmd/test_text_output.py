"""Guest strings in the CLI's text output cannot drive the terminal:
process names, kernel strings and machine names are escaped, the error
line too; JSON output escapes them by itself.
"""

import json

from sparc_nova.cmd import checkpoint_memory
from sparc_nova.cmd import sparc
from tests import streamgen

HOSTILE = 'evil\x1b]0;owned\x07\x1b[2J\u202etxt.exe\nFAKE'
SHOWN = 'evil\\x1b]0;owned\\x07\\x1b[2J\\u202etxt.exe\\nFAKE'


def _clean(text: str) -> bool:
    return not any(c in text for c in '\x1b\x07\u202e') and \
        'FAKE' not in text.replace('\\nFAKE', '')


def _listing():
    return {'kernel': {'osrelease': '6.1\x1b[31m', 'build_id': 'ab'},
            'processes': [{'pid': 7, 'ppid': 1, 'uid': 0, 'comm': HOSTILE,
                           'exe': '/usr/bin/' + HOSTILE, 'threads': 1,
                           'rss_pages': 3, 'kernel_thread': False}]}


def test_ps_text_escapes_guest_strings(monkeypatch, capsys):
    monkeypatch.setattr(checkpoint_memory.listings, 'list_processes',
                        lambda *a, **k: _listing())
    assert sparc.main(['checkpoint', 'ps', 'x.save']) == 0
    out = capsys.readouterr().out
    assert _clean(out)
    assert SHOWN in out and '6.1\\x1b[31m' in out
    assert len(out.splitlines()) == 3


def test_ps_json_is_escaped_by_the_encoder(monkeypatch, capsys):
    monkeypatch.setattr(checkpoint_memory.listings, 'list_processes',
                        lambda *a, **k: _listing())
    assert sparc.main(['checkpoint', 'ps', 'x.save', '--format',
                       'json']) == 0
    out = capsys.readouterr().out
    assert _clean(out)
    assert json.loads(out)['processes'][0]['comm'] == HOSTILE


def test_deps_text_and_dot_escape_guest_strings(monkeypatch, capsys):
    graph = {'processes': [{'pid': 7, 'comm': HOSTILE},
                           {'pid': 8, 'comm': 'b"x\\'}],
             'edges': [{'from': 7, 'to': 8, 'kind': 'pipe',
                        'object': 'pipe:[' + HOSTILE + ']'}]}
    monkeypatch.setattr(checkpoint_memory.listings, 'list_dependencies',
                        lambda *a, **k: graph)
    assert sparc.main(['checkpoint', 'deps', 'x.save']) == 0
    assert _clean(capsys.readouterr().out)
    assert sparc.main(['checkpoint', 'deps', 'x.save', '--format',
                       'dot']) == 0
    dot = capsys.readouterr().out
    assert _clean(dot)
    assert 'label="8 b\\"x\\\\"' in dot


def test_info_text_escapes_the_machine_name(tmp_path, capsys):
    path = tmp_path / 'save.img'
    path.write_bytes(streamgen.simple_save(ram_pages=4,
                                           machine='pc-q35-7.2\x1b[2J\x07'))
    assert sparc.main(['checkpoint', 'info', str(path)]) == 0
    out = capsys.readouterr().out
    assert _clean(out)
    assert 'pc-q35-7.2\\x1b[2J\\x07' in out


def test_error_line_is_escaped(tmp_path, capsys):
    path = tmp_path / ('junk' + HOSTILE)
    path.write_bytes(b'junk' * 10)
    assert sparc.main(['checkpoint', 'info', str(path)]) == 2
    err = capsys.readouterr().err
    assert _clean(err)
    assert err.startswith('sparc: error: ') and SHOWN in err
    assert len(err.splitlines()) == 1
