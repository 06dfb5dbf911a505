"""The host's side of an unprivileged nova-compute, as a deployment sets
it up: the ``nova`` system user (a member of libvirt's socket group), and
a sudoers drop-in that lets it run ``nova-rootwrap`` with this cloud's
``rootwrap.conf`` and nothing else.

Everything here is idempotent: ``ensure`` creates what is missing and
rewrites the drop-in; ``remove_sudoers`` takes the drop-in away.
"""

import grp
import os
import pwd
import subprocess
import tempfile

from tests.e2e.cloud import processes
from tests.e2e.cloud import settings as settings_mod

__all__ = ['ensure', 'remove_sudoers', 'compute_ids', 'rootwrap_command']

Settings = settings_mod.CloudSettings

#: Home of the nova user (Debian's nova-common uses the same).
NOVA_HOME = '/var/lib/nova'


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise processes.CloudError('%s: exit status %d: %s' % (
            ' '.join(argv), result.returncode, result.stderr.strip()))


def _ensure_group(name: str) -> None:
    try:
        grp.getgrnam(name)
    except KeyError:
        _run(['groupadd', '--system', name])


def _ensure_user() -> None:
    user = settings_mod.COMPUTE_USER
    _ensure_group(settings_mod.LIBVIRT_GROUP)
    try:
        pwd.getpwnam(user)
    except KeyError:
        _run(['useradd', '--system', '--user-group', '--home-dir',
              NOVA_HOME, '--create-home', '--shell', '/usr/sbin/nologin',
              '--comment', 'OpenStack Compute', user])
    if user not in grp.getgrnam(settings_mod.LIBVIRT_GROUP).gr_mem:
        _run(['usermod', '--append', '--groups',
              settings_mod.LIBVIRT_GROUP, user])


def compute_ids() -> tuple[int, int, list[int]]:
    """(uid, gid, supplementary gids) nova-compute runs with."""
    entry = pwd.getpwnam(settings_mod.COMPUTE_USER)
    return (entry.pw_uid, entry.pw_gid,
            [grp.getgrnam(settings_mod.LIBVIRT_GROUP).gr_gid])


def rootwrap_conf(conf: Settings) -> str:
    return os.path.join(conf.etc_dir, 'rootwrap.conf')


def rootwrap_command(conf: Settings) -> list[str]:
    """What the drop-in allows, without its trailing ``*``."""
    return [conf.bin('nova-rootwrap'), rootwrap_conf(conf)]


def _sudoers_text(conf: Settings) -> str:
    user = settings_mod.COMPUTE_USER
    # Nova's root helper is "sudo nova-rootwrap CONF": sudo finds
    # nova-rootwrap through secure_path, which therefore starts with the
    # virtualenv's bin (as DevStack's does for its venv).
    return (
        '# The sparc-nova test cloud in %s: nova-compute (user %s) may run\n'
        '# nova-rootwrap with this cloud\'s rootwrap.conf, nothing else.\n'
        'Defaults:%s secure_path="%s:/usr/sbin:/usr/bin:/sbin:/bin"\n'
        '%s ALL=(root) NOPASSWD: %s *\n' % (
            conf.state, user, user, os.path.dirname(conf.bin('x')), user,
            ' '.join(rootwrap_command(conf))))


def _write_sudoers(conf: Settings) -> None:
    if not os.path.exists('/usr/bin/sudo'):
        raise processes.CloudError(
            'sudo is not installed: run tests/e2e/cloud/install.sh')
    os.makedirs('/etc/sudoers.d', exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir='/etc/sudoers.d', prefix='.sparc-')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(_sudoers_text(conf))
        os.chmod(tmp, 0o440)
        _run(['visudo', '-c', '-q', '-f', tmp])
        os.rename(tmp, conf.sudoers_file)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def ensure(conf: Settings) -> None:
    """Create the nova user and its group membership if missing; write the
    sudoers drop-in (checked by ``visudo`` before it is put in place).
    """
    _ensure_user()
    _write_sudoers(conf)


def remove_sudoers(conf: Settings) -> None:
    try:
        os.unlink(conf.sudoers_file)
    except FileNotFoundError:
        pass
