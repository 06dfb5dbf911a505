"""``sparc checkpoint seal`` / ``unseal`` on a real guest (Debian 6.1,
256 MiB, pc; the scenario of :mod:`.scenario`, booted and saved once).

Sealed, the checkpoint and the sealed-pages file hold no marker of the
selected processes (nor the spray's, in free memory); unsealed with the
key, the checkpoint restores with every selected process alive (all
threads, whatever they waited on) and its memory intact, the control
still running. A wrong key or a changed bit is refused and changes
nothing; without free memory scrubbed, seal then unseal gives back the
original save byte for byte.
"""

import json
import os
import re
import shutil
import time

import pytest

from tests.functional.engine import scenario as scen

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def sc(make_guest, guest_image, module_dir):
    return scen.build(make_guest, guest_image, module_dir)


@pytest.fixture(scope='module')
def key_file(module_dir):
    path = os.path.join(module_dir, 'seal.key')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, os.urandom(32))
    os.close(fd)
    return path


def _copy(sc, name):
    path = os.path.join(sc.workdir, name)
    shutil.copyfile(sc.save_path, path)
    os.chmod(path, 0o600)
    return path


def _seal(sc, path, key_file, *extra):
    report_path = path + '.report.json'
    args = ['checkpoint', 'seal', path, '--key-file', key_file,
            '--report', report_path, '--format', 'json', *extra]
    for sel in sc.selectors():
        args += ['--exclude-process', sel]
    printed = json.loads(scen.sparc(*args, check=0).stdout)
    with open(report_path) as f:
        report = json.load(f)
    assert printed['seal']['file'] == report['seal']['file'] == \
        path + '.sparc-sealed'
    return report


def _markers(sc, names):
    return [sc.marker(n).encode() for n in names]


#: Copies of its marker each selected process made in its anonymous
#: pages (two per page; workload.c), at least.
MIN_COPIES = {'simple': 32, 'threads': 16, 'pipe': 32, 'futex': 32,
              'thp': 4096, 'control': 32}


def _copies_in_guest(sc, name):
    """How many copies of its marker the guest reads in the writable
    private mappings of selected process ``name`` (``/proc/PID/mem``,
    mapping by mapping; NULs made line ends, as busybox grep stops a line
    at a NUL).
    """
    out = sc.guest.run(
        'P=%d; while read r perm rest; do case "$perm" in rw-p) ;; '
        '*) continue;; esac; s=${r%%-*}; e=${r#*-}; dd if=/proc/$P/mem '
        'bs=4096 skip=$((0x$s/4096)) count=$(((0x$e-0x$s)/4096)) '
        '2>/dev/null; done < /proc/$P/maps | tr "\\000" "\\n" | '
        'grep -oF %s | wc -l; '
        'echo CNT""-END' % (sc.pids[name], sc.marker(name)), 'CNT-END',
        timeout=120)
    counts = re.findall(r'^\s*(\d+)\s*$', out, re.M)
    assert counts, out[-1000:]
    return int(counts[-1])


def test_seal_unseal_restore(sc, key_file):
    key = open(key_file, 'rb').read()
    path = _copy(sc, 'sealed.save')
    report = _seal(sc, path, key_file)
    sealed_file = report['seal']['file']
    assert report['verification']['result'] == 'ok'
    assert report['seal']['frames'] > 0
    assert report['threads_killed'] == 0
    assert all('kill' not in p for p in report['processes'])
    scen.assert_frames_match(sc, report)
    assert oct(os.stat(sealed_file).st_mode & 0o777) == '0o600'
    # Nothing readable at rest: no marker of the selected processes or of
    # the spray in the checkpoint (as the guest loads it, and raw) or in
    # the sealed-pages file; the key is in no file the seal wrote.
    args = ['checkpoint', 'verify', path, '--format', 'json']
    for name in scen.SELECTED + ('spray',):
        args += ['--marker', sc.marker(name)]
    verified = json.loads(scen.sparc(*args, check=0).stdout)
    assert not verified['found']
    assert verified['sealed']['file'] == sealed_file
    for written in (path, sealed_file, path + '.report.json'):
        data = open(written, 'rb').read()
        for m in _markers(sc, scen.SELECTED + ('spray',)):
            assert m not in data, written
        assert key not in data and key.hex().encode() not in data
    res = scen.sparc('checkpoint', 'verify', path, '--format', 'json',
                     '--marker', sc.marker('control'), check=1)
    assert json.loads(res.stdout)['markers'][0]['in_memory'] > 0
    info = scen.sparc('checkpoint', 'info', path, check=0).stdout
    assert 'unseal before restoring' in info

    # A wrong key, and a changed bit, are refused and change nothing.
    wrong = os.path.join(sc.workdir, 'wrong.key')
    fd = os.open(wrong, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, os.urandom(32))
    os.close(fd)
    before = {p: scen.sha256(p) for p in (path, sealed_file)}
    res = scen.sparc('checkpoint', 'unseal', path, '--key-file', wrong,
                     check=2)
    assert 'does not open it' in res.stderr
    data = bytearray(open(sealed_file, 'rb').read())
    data[len(data) // 2] ^= 0x04
    flipped = bytes(data)
    data[len(data) // 2] ^= 0x04
    with open(sealed_file, 'wb') as f:
        f.write(flipped)
    res = scen.sparc('checkpoint', 'unseal', path, '--key-file', key_file,
                     check=2)
    assert 'authentication tag' in res.stderr
    with open(sealed_file, 'wb') as f:
        f.write(bytes(data))
    assert {p: scen.sha256(p) for p in (path, sealed_file)} == before

    # Unsealed: every selected process's pages are back.
    res = json.loads(scen.sparc('checkpoint', 'unseal', path, '--key-file',
                                key_file, '--format', 'json',
                                check=0).stdout)
    assert res['verification']['result'] == 'ok'
    assert res['frames_restored'] == report['seal']['frames']
    assert not os.path.exists(sealed_file)
    counts = json.loads(scen.sparc(
        'checkpoint', 'verify', path, '--format', 'json',
        *[a for n in scen.SELECTED for a in ('--marker', sc.marker(n))],
        check=1).stdout)
    assert all(m['in_memory'] > 0 for m in counts['markers'])

    # Restored, they run on with their data.
    g = sc.guest
    g.restore(path)
    beat = g.heartbeat()
    time.sleep(3)
    procs = {p['pid']: p for p in g.processes()}
    for name in scen.SELECTED + ('control',):
        assert sc.pids[name] in procs, name
    assert procs[sc.pids['threads']]['threads'] == 4
    # The control (never selected) shows the guest reads its own copies.
    for name in ('control',) + scen.SELECTED:
        assert _copies_in_guest(sc, name) >= MIN_COPIES[name], \
            (name, g.console_text()[-1500:])
    time.sleep(2)
    assert g.heartbeat() > beat
    assert g.oopses() == []


def test_round_trip_is_byte_identical(sc, key_file):
    """Without free memory scrubbed (``--keep-free-pages``), seal then
    unseal gives back the save exactly (restoring the sealed image in
    between, as users must not, changes nothing in it).
    """
    path = _copy(sc, 'round-trip.save')
    original = scen.sha256(path)
    report = _seal(sc, path, key_file, '--keep-free-pages')
    assert report['seal']['frames'] > 0
    sealed_digest = scen.sha256(path)
    assert sealed_digest != original
    _restore_sealed(sc, path)
    # A restore reads the image and leaves it as it was.
    assert scen.sha256(path) == sealed_digest
    scen.sparc('checkpoint', 'unseal', path, '--key-file', key_file,
               check=0)
    assert scen.sha256(path) == original


def _restore_sealed(sc, path):
    """What users must not do, documented: a sealed checkpoint restored
    without its unseal. No kill is armed, so a selected process that is
    still there runs on the zeroed pages: the guest reads not one copy
    of its marker in its memory. The control and the guest run on.
    """
    g = sc.guest
    g.disconnect_console()
    g.dom.destroy()
    since = g.console_size()
    g.restore(path)
    time.sleep(3)
    alive = {p['pid'] for p in g.processes()}
    assert sc.pids['control'] in alive
    for name in scen.SELECTED:
        if sc.pids[name] in alive:
            assert _copies_in_guest(sc, name) == 0, name
    # The guest runs on (its heartbeat counts on from the saved value).
    g.wait_for(r'HEARTBEAT \d+', 30, since)
