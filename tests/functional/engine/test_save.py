"""``sparc checkpoint save`` on a real guest (Debian 6.1, 256 MiB, pc):
the guest saved and scrubbed at once, the scrub starting when libvirt
marks the image complete.
"""

import json
import os

import pytest

from tests.functional.engine import scenario as scen

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def sc(make_guest, guest_image, module_dir):
    return scen.build(make_guest, guest_image, module_dir)


def test_save_scrubs_as_the_save_ends(sc):
    """``sparc checkpoint save``: the running guest saved and scrubbed at
    once; the image holds no selected or spray marker, keeps the
    control's, and restores with the selected processes killed.
    """
    g = sc.guest
    g.restore(sc.save_path)
    g.disconnect_console()
    out = os.path.join(sc.workdir, 'saved-scrubbed.save')
    report_path = os.path.join(sc.workdir, 'save-report.json')
    args = ['checkpoint', 'save', sc.guest.name, out, '--report',
            report_path, '--format', 'json']
    for sel in sc.selectors():
        args += ['--exclude-process', sel]
    scen.sparc(*args, check=0)
    with open(report_path) as f:
        report = json.load(f)
    assert report['verification']['result'] == 'ok'
    assert report['output'] == out
    assert report['timings']['save'] > 0
    assert 'image_complete_after' in report['during_save']
    # The vCPUs' state comes last in the stream; the kernel model that
    # followed the save is tied to it all the same.
    assert report['kernel']['vcpu_anchors'] >= 1
    scen.assert_frames_match(sc, report)
    args = ['checkpoint', 'verify', out, '--format', 'json']
    for name in scen.SELECTED + ('spray',):
        args += ['--marker', sc.marker(name)]
    assert not json.loads(scen.sparc(*args, check=0).stdout)['found']
    scen.sparc('checkpoint', 'verify', out, '--marker',
               sc.marker('control'), check=1)
    scen.restore_and_check(sc, out)
