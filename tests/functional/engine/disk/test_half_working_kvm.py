"""A host where KVM opens but never runs guest code: the probe says no
within its deadline, an appliance launch that hangs on KVM is killed and
started again on TCG, and a command that hangs in the appliance is cut
off.

A fake ``qemu-system-x86_64`` first on ``PATH`` plays the broken KVM: asked
for KVM (the probe's ``-accel kvm``, or a real appliance launch with
``accel=kvm``) it never answers; anything else (libguestfs' capability
queries, TCG launches) runs the real QEMU.
"""

import os
import subprocess
import time

import pytest

from sparc_nova.engine.disk import appliance

pytestmark = pytest.mark.slow

FAKE_QEMU = """#!/bin/sh
case " $* " in
  *" -accel kvm "*) exec sleep 100000 ;;
  *" -kernel "*accel=kvm*) exec sleep 100000 ;;
esac
exec %s "$@"
"""


@pytest.fixture
def broken_kvm(tmp_path, monkeypatch):
    real = subprocess.run(['sh', '-c', 'command -v qemu-system-x86_64'],
                          capture_output=True, text=True,
                          check=True).stdout.strip()
    fake = tmp_path / 'bin' / 'qemu-system-x86_64'
    fake.parent.mkdir()
    fake.write_text(FAKE_QEMU % real)
    fake.chmod(0o755)
    monkeypatch.setenv('PATH', '%s:%s' % (fake.parent, os.environ['PATH']))
    monkeypatch.setenv('LIBGUESTFS_BACKEND', 'direct')
    appliance.kvm_usable.cache_clear()
    yield
    appliance.kvm_usable.cache_clear()


def test_probe_sees_the_kernel_run_on_tcg():
    # The probe's test of "guest code runs" works where it can: TCG.
    assert appliance.kernel_runs('tcg', timeout=60)


def test_probe_says_no_when_kvm_never_runs(broken_kvm, monkeypatch):
    monkeypatch.setattr(appliance.os, 'access', lambda *a: True)
    start = time.monotonic()
    assert appliance.kvm_usable(timeout=3) is False
    assert time.monotonic() - start < 15


def test_hanging_launch_is_retried_on_tcg_and_calls_are_bounded(
        broken_kvm, tmp_path):
    disk = tmp_path / 'disk.raw'
    subprocess.run(['truncate', '-s', '64M', str(disk)], check=True)
    notes = []
    start = time.monotonic()
    g = appliance.launch(str(disk), [(str(disk), True)], accel='kvm',
                         timeout=45, notes=notes)
    try:
        assert time.monotonic() - start >= 45
        assert notes and 'started on TCG' in notes[0]
        assert appliance.run_status(g, ['echo', 'alive']) == (0, 'alive\n')
        start = time.monotonic()
        with pytest.raises(appliance.ApplianceTimeout, match='sleep ran'):
            appliance.run_status(g, ['sleep', '600'], timeout=5)
        assert time.monotonic() - start < 60
    finally:
        g.close()
