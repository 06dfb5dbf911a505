"""The same end-to-end exclusion on other guests: Debian's 6.12 kernel
(bookworm security/backports) and a 4 GiB q35 guest (RAM above the 4 GiB
hole).
"""

import os

import pytest

from tests.functional.engine import scenario as scen
from tests.functional.testbed import build
from tests.functional.testbed import guest as guest_mod
from tests.functional.testbed import kernels

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def own_guests():
    guests = []

    def factory(image, **kwargs):
        g = guest_mod.Guest(image, **kwargs)
        guests.append(g)
        g.start(timeout=300)
        return g
    yield factory
    for g in guests:
        g.destroy()


def test_debian_6_12(own_guests, work_root, module_dir):
    # The only test on a second kernel: a kernel that cannot be fetched
    # fails the run (KernelUnavailable says why), it is never skipped.
    kernel = kernels.debian_kernel('6.12')
    image = build.build_guest(os.path.join(work_root, 'image-6.12'),
                              kernel=kernel)
    workdir = os.path.join(module_dir, '6.12')
    os.makedirs(workdir, exist_ok=True)
    sc = scen.build(lambda **kw: own_guests(image, **kw), image, workdir)
    report = scen.end_to_end(sc)
    assert report['kernel']['osrelease'].startswith('6.12.')
    assert report['kernel']['version'].startswith('6.12.')


def test_q35_4gib(own_guests, guest_image, module_dir):
    workdir = os.path.join(module_dir, 'q35')
    os.makedirs(workdir, exist_ok=True)
    sc = scen.build(lambda **kw: own_guests(guest_image, **kw), guest_image,
                    workdir, memory_mib=4096, machine='q35')
    report = scen.end_to_end(sc)
    # Guest RAM above 4 GiB is scanned too.
    assert report['free_pages']['frames'] > (3 << 30) >> 12
