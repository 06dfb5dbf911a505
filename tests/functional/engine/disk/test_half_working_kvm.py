"""A host where KVM opens but never runs guest code: the probe says no
within its deadline, an appliance launch that hangs on KVM is killed and
started again on TCG, and a command that hangs in the appliance is cut
off.

A fake ``qemu-system-x86_64`` first on ``PATH`` plays the broken KVM: asked
for KVM (the probe's ``-accel kvm``, or a real appliance launch, one
with ``-kernel``, whose ``-machine`` allows KVM) it never answers, or
(the other way a half-working KVM shows) exits at once with an error;
anything else (libguestfs' capability queries, TCG launches) runs the
real QEMU.
"""

import os
import subprocess
import time

import pytest

from sparc_nova.engine.disk import appliance

pytestmark = pytest.mark.slow

FAKE_QEMU = """#!/bin/sh
case " $* " in
  *" -accel kvm "*) %(broken)s ;;
  *" -kernel "*)
    case " $* " in *accel=kvm*) %(broken)s ;; esac ;;
esac
exec %(real)s "$@"
"""
#: What the fake does when asked for KVM.
HANG = 'exec sleep 100000'
CRASH = 'echo "qemu-system-x86_64: kvm_buf_set_msrs: Assertion failed" ' \
        '>&2; exit 134'


def _fake_qemu(tmp_path, monkeypatch, broken):
    """Put the fake QEMU doing ``broken`` when asked for KVM first on
    ``PATH`` for one test (the KVM probe's cached answer forgotten before
    and after).
    """
    real = subprocess.run(['sh', '-c', 'command -v qemu-system-x86_64'],
                          capture_output=True, text=True,
                          check=True).stdout.strip()
    fake = tmp_path / 'bin' / 'qemu-system-x86_64'
    fake.parent.mkdir()
    fake.write_text(FAKE_QEMU % {'broken': broken, 'real': real})
    fake.chmod(0o755)
    monkeypatch.setenv('PATH', '%s:%s' % (fake.parent, os.environ['PATH']))
    monkeypatch.setenv('LIBGUESTFS_BACKEND', 'direct')
    appliance.kvm_usable.cache_clear()
    yield
    appliance.kvm_usable.cache_clear()


@pytest.fixture
def broken_kvm(tmp_path, monkeypatch):
    yield from _fake_qemu(tmp_path, monkeypatch, HANG)


@pytest.fixture
def crashing_kvm(tmp_path, monkeypatch):
    yield from _fake_qemu(tmp_path, monkeypatch, CRASH)


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


def test_crashing_launch_is_retried_on_tcg(crashing_kvm, tmp_path):
    disk = tmp_path / 'disk.raw'
    subprocess.run(['truncate', '-s', '64M', str(disk)], check=True)
    notes = []
    g = appliance.launch(str(disk), [(str(disk), True)], accel='kvm',
                         timeout=45, notes=notes)
    try:
        assert notes == ['the libguestfs appliance failed to start with '
                         'KVM allowed and started on TCG']
        assert appliance.run_status(g, ['echo', 'alive']) == (0, 'alive\n')
    finally:
        g.close()


def test_a_failed_launch_on_tcg_is_not_retried(crashing_kvm, tmp_path,
                                               monkeypatch):
    """Only KVM gets a second chance: a launch that fails on TCG fails
    the scrub at once.
    """
    calls = []
    real = appliance._launch

    def failing(path, drives, settings, memsize_mib, timeout,
                appliance_dir):
        calls.append(settings)
        if 'force_tcg' in settings:
            raise appliance.exception.DiskScrubError(path, 'no QEMU')
        return real(path, drives, settings, memsize_mib, timeout,
                    appliance_dir)
    monkeypatch.setattr(appliance, '_launch', failing)
    disk = tmp_path / 'disk.raw'
    subprocess.run(['truncate', '-s', '64M', str(disk)], check=True)
    with pytest.raises(appliance.exception.DiskScrubError, match='no QEMU'):
        appliance.launch(str(disk), [(str(disk), True)], accel='tcg')
    assert calls == [['force_tcg']]
