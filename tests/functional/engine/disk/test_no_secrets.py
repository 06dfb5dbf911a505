"""No secret in logs or reports: a full run with debug logging on.

One guest is checkpointed; ``sparc checkpoint ps``, ``scrub --report``
and ``verify`` run on it, and ``sparc image scrub`` on a disk image with
exclude paths whose names are secrets themselves (one names a file whose
name holds the disk marker, one matches nothing, one is a held path).
Every command runs with ``--debug --log-file``; stdout, stderr, the log
files and the JSON reports must hold no marker (as text, hex or base64)
and no excluded path name. ``--show-paths`` puts the names in the disk
report, where the operator asked for them, and nowhere else.
"""

import base64
import json
import os
import secrets
import subprocess
import sys

import pytest

from tests.functional.engine.disk import images

pytestmark = pytest.mark.slow

#: Workload markers of the guest: 1 is selected, 4 is the control.
SELECTED_MARKER, CONTROL_MARKER = 1, 4


def _variants(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, raw.hex().encode(), raw.hex().upper().encode(),
            base64.b64encode(raw)]


class Run:
    """Every byte a run showed: outputs, logs and reports by name."""

    def __init__(self, directory: str):
        self.directory = directory
        self.texts: dict[str, bytes] = {}

    def sparc(self, name: str, *args: str, check: int = 0) -> str:
        log = os.path.join(self.directory, name + '.log')
        proc = subprocess.run([sys.executable, '-m', 'sparc_nova.cmd.sparc',
                               '--debug', '--log-file', log] + list(args),
                              capture_output=True, timeout=1200)
        self.texts[name + ' stdout'] = proc.stdout
        self.texts[name + ' stderr'] = proc.stderr
        with open(log, 'rb') as f:
            self.texts[name + ' log'] = f.read()
        assert proc.returncode == check, (
            name, proc.returncode, proc.stderr[-3000:])
        return proc.stdout.decode()

    def add_file(self, name: str, path: str) -> None:
        with open(path, 'rb') as f:
            self.texts[name] = f.read()

    def leaks(self, secret: str, skip=()) -> list[str]:
        return [name for name, text in self.texts.items()
                if name not in skip
                and any(v in text for v in _variants(secret))]


@pytest.fixture(scope='module')
def memory_run(make_guest, guest_image, module_dir):
    g = make_guest(memory_mib=256, vcpus=1)
    pid = g.start_workload('hold %d --pages 16' % SELECTED_MARKER)
    g.start_workload('hold %d' % CONTROL_MARKER)
    save = os.path.join(module_dir, 'guest.save')
    g.save(save)
    g.destroy()
    run = Run(module_dir)
    out = os.path.join(module_dir, 'scrubbed.save')
    report = os.path.join(module_dir, 'memory-report.json')
    markers = [guest_image.marker(SELECTED_MARKER),
               guest_image.marker(CONTROL_MARKER)]
    ps = run.sparc('ps', 'checkpoint', 'ps', save, '--format', 'json')
    assert pid in [p['pid'] for p in json.loads(ps)['processes']]
    run.sparc('scrub', 'checkpoint', 'scrub', save, '--output', out,
              '--exclude-process', 'pid:%d' % pid, '--report', report)
    run.add_file('scrub report', report)
    marker_args = [a for m in markers for a in ('--marker', m)]
    run.sparc('verify-before', 'checkpoint', 'verify', save, *marker_args,
              check=1)
    res = run.sparc('verify-after', 'checkpoint', 'verify', out,
                    '--format', 'json', *marker_args, check=1)
    rows = json.loads(res)['markers']
    # The check can fail: the control's marker is found, by position.
    assert [r['marker'] for r in rows] == ['#1', '#2']
    assert rows[0]['in_memory'] == 0 and rows[1]['in_memory'] > 0
    return run, markers


@pytest.fixture(scope='module')
def disk_names(disk_tree):
    """Exclude paths that are secrets: a literal path holding the disk
    marker, a glob that matches nothing and a held path, both named
    after fresh secrets.
    """
    unmatched = 'SPRCNAME' + secrets.token_hex(8).upper()
    held = 'SPRCHELD' + secrets.token_hex(8).upper()
    return {
        'secrets': [disk_tree.marker, unmatched, held],
        'args': ['--exclude-path',
                 '/home/alice/projects/note-%s.txt' % disk_tree.marker,
                 '--exclude-path', '/home/*/%s/**' % unmatched,
                 '--held-path', '/srv/%s.db' % held]
        + ['--exclude-path=' + glob for glob in images.EXCLUDE_PATHS]
        + [a for preset in images.PRESETS for a in ('--preset', preset)],
    }


def _disk_scrub(run, ext4_qcow2, names, label, *extra):
    dst = os.path.join(run.directory, label + '.qcow2')
    report = os.path.join(run.directory, label + '-report.json')
    run.sparc(label, 'image', 'scrub', ext4_qcow2, '--output', dst,
              '--report', report, *names['args'], *extra)
    run.add_file(label + ' report', report)
    run.sparc(label + '-verify', 'image', 'verify', dst,
              *[a for s in names['secrets'] for a in ('--marker', s)])
    return report


def test_no_secret_anywhere(memory_run, ext4_qcow2, disk_names):
    run, markers = memory_run
    _disk_scrub(run, ext4_qcow2, disk_names, 'disk')
    assert run.texts['disk report'] and run.texts['scrub report']
    # 4 memory and 2 disk commands (stdout, stderr, log), 2 reports.
    assert len(run.texts) == 20
    # Logging is on: the disk scrub logs what it did (counts only).
    assert b'Scrubbed ' in run.texts['disk log']
    for secret in markers + disk_names['secrets']:
        assert run.leaks(secret) == [], secret


def test_show_paths_reveals_names_in_the_report_only(memory_run, ext4_qcow2,
                                                     disk_names):
    run, _ = memory_run
    report = _disk_scrub(run, ext4_qcow2, disk_names, 'disk-named',
                         '--show-paths')
    with open(report) as f:
        data = json.load(f)
    marker, unmatched, held = disk_names['secrets']
    removed = [r['path'] for r in data['removed']]
    assert '/home/alice/projects/note-%s.txt' % marker in removed
    assert '/home/*/%s/**' % unmatched in data['unmatched_rules']
    assert '/srv/%s.db' % held in data['unmatched_rules']
    # The summary on the operator's terminal and the report name them;
    # the log, stderr and the verification do not.
    operator = ('disk-named stdout', 'disk-named report')
    for secret in disk_names['secrets']:
        assert set(run.leaks(secret)) <= set(operator), secret
    assert run.leaks(marker) != []
