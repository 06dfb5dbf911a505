"""Shared fixtures of the real-guest functional suite.

Guests are expensive under TCG: the guest image is built once per session
and each test module boots its guests once (module-scoped fixtures) and
checkpoints them many times. Every guest is destroyed and undefined at the
end, even when a test fails.
"""

import os
import shutil
import tempfile

import pytest

from tests.functional.testbed import build
from tests.functional.testbed import guest as guest_mod

#: Where functional tests keep their big files (save images, dumps).
WORK_ROOT = os.environ.get('SPARC_TEST_WORKDIR', '/var/tmp/sparc-tests')


@pytest.fixture(scope='session')
def libvirt_daemons():
    """libvirtd and virtlogd running (started here when they are not)."""
    guest_mod.ensure_daemons()


@pytest.fixture(scope='session')
def work_root():
    os.makedirs(WORK_ROOT, exist_ok=True)
    os.chmod(WORK_ROOT, 0o755)
    path = tempfile.mkdtemp(prefix='run-', dir=WORK_ROOT)
    os.chmod(path, 0o755)
    yield path
    if not os.environ.get('SPARC_TEST_KEEP'):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope='session')
def guest_image(work_root, libvirt_daemons):
    """The test bed guest (kernel, initramfs, markers), built once."""
    return build.build_guest(os.path.join(work_root, 'image'))


@pytest.fixture(scope='module')
def module_dir(work_root, request):
    path = os.path.join(work_root, request.module.__name__.split('.')[-1])
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)
    return path


@pytest.fixture(scope='module')
def make_guest(guest_image):
    """Factory: ``make_guest(memory_mib=256, machine='pc', ...)`` boots a
    guest that is destroyed when the module ends.
    """
    guests = []

    def factory(**kwargs):
        g = guest_mod.Guest(guest_image, **kwargs)
        guests.append(g)
        g.start()
        return g
    yield factory
    for g in guests:
        g.destroy()
