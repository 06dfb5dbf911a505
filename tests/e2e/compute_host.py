"""The test cloud's compute host seen from /proc: nova-compute's process
and the privsep daemons it started.
"""

import os

from tests.e2e.cloud import nova as cloud_nova

__all__ = ['SPARC_CONTEXT', 'compute_pid', 'privsep_daemons', 'uids',
           'environ', 'path_files']

#: sparc-nova's privsep context (its daemon's --privsep_context).
SPARC_CONTEXT = 'sparc_nova.privsep.scrub_pctxt'


def compute_pid(cloud) -> int:
    pid = cloud.sup.pid('nova-compute')
    assert pid is not None, 'nova-compute is not running'
    return pid


def _cmdline(pid: str) -> list[str]:
    try:
        with open('/proc/%s/cmdline' % pid, 'rb') as f:
            return f.read().decode(errors='replace').split('\0')
    except OSError:
        return []


def privsep_daemons(cloud, context: str = SPARC_CONTEXT) -> list[int]:
    """The running privsep daemons of ``context`` started with this
    cloud's nova-compute configuration.
    """
    conf_file = cloud_nova.compute_conf_file(cloud.conf)
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        argv = _cmdline(entry)
        if any(os.path.basename(a) == 'privsep-helper' for a in argv[:2]) \
                and context in argv and conf_file in argv:
            found.append(int(entry))
    return found


def uids(pid: int) -> list[int]:
    """Real, effective, saved and file-system uid of ``pid``."""
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('Uid:'):
                return [int(v) for v in line.split()[1:]]
    raise AssertionError('no Uid line for %d' % pid)


def environ(pid: int, names: tuple[str, ...]) -> dict[str, str]:
    """The variables ``names`` of ``pid``'s environment that are set (only
    those: the rest may hold secrets a test must not print).
    """
    with open('/proc/%d/environ' % pid, 'rb') as f:
        items = f.read().decode(errors='replace').split('\0')
    pairs = (i.partition('=')[::2] for i in items if '=' in i)
    return {k: v for k, v in pairs if k in names}


def path_files(*roots: str, skip: tuple[str, ...] = ()) -> list[str]:
    """Every regular file under ``roots``, except in directories or with
    names listed in ``skip``.
    """
    files = []
    for root in roots:
        for top, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if d not in skip]
            files += [os.path.join(top, n) for n in names
                      if n not in skip and
                      os.path.isfile(os.path.join(top, n))]
    return files
