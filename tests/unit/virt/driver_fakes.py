"""The sparc driver as its unit tests build it: without LibvirtDriver's
constructor, its privileged entry points mocked.
"""

import contextlib
from unittest import mock

from sparc_nova.virt.libvirt import driver
from sparc_nova.virt.libvirt import snapshot as snapshot_hooks


@contextlib.contextmanager
def mocked_privileged(*names: str):
    """Replace the privileged entry points ``names`` of
    ``privsep_checkpoint`` by the attributes of one :class:`mock.Mock`,
    which is yielded.
    """
    mocks = mock.Mock()
    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(mock.patch.object(
                driver.privsep_checkpoint, name, getattr(mocks, name)))
        yield mocks


def bare_driver() -> driver.SparcLibvirtDriver:
    """A driver object with what sparc-nova's own methods need (snapshot
    jobs, a mocked scrubber) and nothing of LibvirtDriver's state.
    """
    d = driver.SparcLibvirtDriver.__new__(driver.SparcLibvirtDriver)
    d._snapshot_jobs = snapshot_hooks.SnapshotJobs()
    d._scrubber = mock.Mock()
    return d
