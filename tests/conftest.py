"""Make the repository root importable (``tests.*`` helpers), and keep
tests that share expensive fixtures on one worker when the suite runs on
several (pytest-xdist, ``-n N``; tools/run-tests.sh).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

#: Directories whose tests share session fixtures that must exist once:
#: the end-to-end stage's one test cloud, and the disk tests' images
#: built in one appliance launch; and the modules that run the driver's
#: managed saves through the host's libvirt, whose managed-save directory
#: they share: the driver's start (``init_host``, in test_upgrade) deletes
#: every unfinished managed save there and sweeps the leftovers of
#: interrupted scrubs, which would include another module's save in
#: flight. Every other file is its own group (its module-scoped guests
#: are booted once, on one worker).
SHARED_GROUPS = (
    ('tests/e2e/', 'e2e'),
    ('tests/functional/engine/disk/', 'disk'),
    ('tests/functional/virt/test_driver_libvirt.py', 'host-managed-saves'),
    ('tests/functional/virt/test_upgrade.py', 'host-managed-saves'),
)

#: Tests that need no shared fixture and take minutes each: one group
#: per test, so that they can run beside each other.
ALONE = ('tests/functional/virt/test_nova_harness.py',)


def worker_group(nodeid: str) -> str:
    """The group of a test, from its node id (a path relative to the
    repository root, then ``::`` and the test's name): all the tests of a
    group run on one worker, in collection order.
    """
    path = nodeid.split('::', 1)[0]
    for prefix, group in SHARED_GROUPS:
        if path.startswith(prefix):
            return group
    if path in ALONE:
        return nodeid
    return path


def _rank(nodeid: str) -> int:
    group = worker_group(nodeid)
    for index, (_, shared) in enumerate(SHARED_GROUPS):
        if group == shared:
            return index
    if group.startswith(ALONE):
        return len(SHARED_GROUPS)
    return len(SHARED_GROUPS) + 1


def pytest_collection_modifyitems(config, items):
    """On an xdist worker, hand out the long groups first (longest
    processing time first: the disk group, the end-to-end stage and the
    Nova harness are half of the suite's time), so that no worker ends
    with one long group while the other idles. The sort is stable: a
    group's tests keep their order.
    """
    if hasattr(config, 'workerinput'):
        items.sort(key=lambda item: _rank(item.nodeid))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Schedule whole groups (:func:`worker_group`). xdist's own
    ``loadgroup`` mode needs a mark per test and rewrites node ids, which
    pytest 9 no longer allows; its ``loadscope`` scheduler with our
    grouping does the same.
    """
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    config.option.loadscopereorder = False
    return GroupScheduling(config, log)


@pytest.fixture(autouse=True)
def _no_spare_sandbox_child_outlives_its_test():
    """A test that ran a privileged entry point in this process (which
    keeps a sandbox child started ahead) lets that child go when it ends.
    """
    yield
    sandbox = sys.modules.get('sparc_nova.engine.sandbox')
    if sandbox is not None:
        sandbox.discard_spares()
