"""Failed disk scrubs keep guest file names out of their errors.

A fake appliance holds one file the rules select, whose name is a
secret; each step of the scrub fails in turn, with the message the real
tool prints (which names the file). The DiskScrubError must not name it,
in any form, nor chain the tool's error (tracebacks show the chain).
"""

import traceback

import pytest

from sparc_nova.engine.disk import appliance
from sparc_nova.engine.disk import batch
from sparc_nova.engine.disk import options as options_mod
from sparc_nova.engine.disk import redact
from sparc_nova.engine.disk import removal
from sparc_nova.engine.disk import report as report_mod
from sparc_nova.engine.disk import rules as rules_mod
from sparc_nova.engine.disk import session as session_mod
from sparc_nova.engine.disk import verify
from sparc_nova.engine.disk import volumes as volumes_mod
from sparc_nova.engine.disk import wipe
from sparc_nova import exception

SECRET = 'SPRCNAME4f1c'
DIRECTORY = '/home/alice/acquisition-' + SECRET
FILE = DIRECTORY + '/note-' + SECRET + '.txt'
GLOB = '/home/*/acquisition-%s/**' % SECRET
HELD = '/srv/held-%s.db' % SECRET


class FakeAppliance:
    """The libguestfs calls a scrub of one ext4 tree makes; ``fail_on``
    names the shell command (shred, rm) that fails as it would on an
    immutable file.
    """

    def __init__(self, fail_on=None):
        self.fail_on = fail_on
        self.names = [DIRECTORY, FILE, '/home/alice/kept.txt']

    def mount(self, mountable, mountpoint):
        pass

    mount_ro = mount

    def umount_all(self):
        pass

    def find0(self, directory, listing):
        with open(listing, 'wb') as f:
            f.write(b''.join(n.lstrip('/').encode() + b'\0'
                             for n in self.names))

    def lstatnslist(self, directory, names):
        return [{'st_mode': 0o040755 if n.startswith('acq') else 0o100644,
                 'st_size': 12, 'st_nlink': 1} for n in names]

    def debug(self, cmd, args):
        script = args[0]
        if self.fail_on and self.fail_on in script:
            path = batch.SYSROOT + FILE
            tool = self.fail_on
            return ("%s: %s: failed to open for writing: Operation not "
                    "permitted\n%s: cannot remove '%s': Operation not "
                    "permitted\n" % (tool, path, tool, path)
                    + appliance._RC_MARK + '1')
        return appliance._RC_MARK + '0'

    def get_pid(self):
        raise RuntimeError('no hypervisor is running')

    def sync(self):
        pass

    def ls(self, path):
        return []

    def rmdir(self, path):
        raise RuntimeError('rmdir: %s: Directory not empty' % path)

    def fstrim(self, mountpoint):
        pass


def _session(tmp_path, g, reveal_paths=False, globs=(GLOB,)):
    rules = rules_mod.Rules(list(globs), held_paths=[HELD])
    report = report_mod.ScrubReport('img.qcow2', 'out', 'qcow2',
                                    reveal_paths=reveal_paths)
    s = session_mod.Session(g, 'img.qcow2', rules,
                            options_mod.ScrubOptions(), report,
                            str(tmp_path), str(tmp_path / 'work.raw'))
    volume = volumes_mod.Volume('/dev/sda1', 'ext4',
                                volumes_mod.ROLE_FILESYSTEM,
                                report_mod.VolumeReport('/dev/sda1',
                                                        'filesystem'))
    s.volumes = {'/dev/sda1': volume}
    s.trees = [volumes_mod.Tree([('/', '/dev/sda1', '/dev/sda1')])]
    return s


@pytest.fixture(autouse=True)
def no_reads(monkeypatch):
    monkeypatch.setattr(batch, 'read_files', lambda g, files: {})
    monkeypatch.setattr(batch, 'read_windows', lambda g, windows: [])
    monkeypatch.setattr(batch, 'sha256_files',
                        lambda g, paths: ['0' * 64 for _ in paths])


def _shown(error: BaseException) -> str:
    """Everything a log or a Nova fault could show of ``error``."""
    return ''.join(traceback.format_exception(error)) + repr(vars(error))


def _assert_unnamed(error):
    shown = _shown(error)
    assert SECRET not in shown
    assert 'acquisition' not in shown
    assert error.__cause__ is None and error.__suppress_context__


@pytest.mark.parametrize('reveal_paths', [False, True])
@pytest.mark.parametrize('tool', ['shred', 'rm'])
def test_failed_removal_names_no_file(tmp_path, tool, reveal_paths):
    session = _session(tmp_path, FakeAppliance(fail_on=tool), reveal_paths)
    with pytest.raises(exception.DiskScrubError) as e:
        removal.scrub_tree(session, 0, session.trees[0])
    assert 'removing files failed: sh exited 1: %s: <path>' % tool in str(
        e.value)
    assert str(e.value).count('<name>') == 1
    _assert_unnamed(e.value)


def test_failed_directory_removal_names_no_file(tmp_path):
    session = _session(tmp_path, FakeAppliance(),
                       globs=(GLOB, DIRECTORY))
    with pytest.raises(exception.DiskScrubError) as e:
        removal.scrub_tree(session, 0, session.trees[0])
    assert 'rmdir: <path> Directory not empty' in str(e.value)
    _assert_unnamed(e.value)


@pytest.mark.parametrize('step, method', [
    (wipe.clean_filesystems, 'clean'), (verify.check_filesystems, 'check')])
def test_failed_filesystem_step_names_no_file(tmp_path, monkeypatch, step,
                                              method):
    session = _session(tmp_path, FakeAppliance())
    session.redactor.add_paths([FILE, DIRECTORY])
    backend = session.backend(session.volumes['/dev/sda1'])

    def fails(g, device):
        raise RuntimeError(
            "e2fsck exited 4: Entry 'note-%s.txt' in %s (12) has deleted/"
            "unused inode 13. Clear? no\nacquisition-%s: UNEXPECTED "
            "INCONSISTENCY" % (SECRET, DIRECTORY, SECRET))
    monkeypatch.setattr(backend, method, fails)
    with pytest.raises(exception.DiskScrubError) as e:
        step(session)
    assert '/dev/sda1' in str(e.value) and 'e2fsck exited 4' in str(e.value)
    _assert_unnamed(e.value)


def test_detail_of_an_error_no_step_wrapped(tmp_path):
    """scrub_image's own handler words libguestfs errors with detail()."""
    session = _session(tmp_path, FakeAppliance())
    session.redactor.add_paths([FILE])
    detail = session.detail(RuntimeError('lstatnslist: %s: x' % FILE))
    assert detail == 'lstatnslist: <path> x'


def test_kept_file_changed_is_named_like_the_report_names_paths(tmp_path):
    g = FakeAppliance()
    g.names = ['/home/alice/kept.txt']
    session = _session(tmp_path, g)
    session.kept_hashes = {(0, '/home/alice/kept.txt'): '1' * 64}
    with pytest.raises(exception.DiskVerificationError) as e:
        verify.verify_trees(session)
    assert '/home/alice/kept.txt' not in str(e.value)
    assert 'sha256:' + report_mod.path_digest('/home/alice/kept.txt') in \
        str(e.value)


@pytest.mark.parametrize('text, cleaned', [
    ("rm: cannot remove '/sysroot/x/y': Operation not permitted",
     'rm: cannot remove <name>: Operation not permitted'),
    ('shred: /sysroot/home/a b: failed', 'shred: <path> b: failed'),
    ('mkfs: /dev/sda1 is mounted', 'mkfs: /dev/sda1 is mounted'),
    ('name \x1b[2J\u202e in a message', 'name \\x1b[2J\\u202e in a message'),
    ('held-%s.db is busy' % SECRET, '<redacted> is busy'),
    ('dir acquisition-%s gone' % SECRET, 'dir <redacted> gone'),
    ('e2fsck: `note-%s.txt\' bad' % SECRET, 'e2fsck: <name> bad'),
])
def test_redactor(text, cleaned):
    r = redact.Redactor([GLOB, '!' + HELD])
    assert r.clean(text) == cleaned


def test_redactor_bounds_the_message():
    assert len(redact.Redactor().clean('x ' * 5000)) == redact.MAX_MESSAGE
