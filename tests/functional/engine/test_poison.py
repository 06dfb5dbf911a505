"""A guest booted with page poisoning: free pages must be rewritten with
the poison pattern (0xaa), or the kernel reports corruption when it hands
them out again.
"""

import json
import os

import pytest

from tests.functional.engine import scenario as scen
from tests.functional.testbed import guest as guest_mod

pytestmark = pytest.mark.slow


def test_free_pages_get_poison(make_guest, guest_image, module_dir):
    sc = scen.build(make_guest, guest_image, module_dir,
                    cmdline=guest_mod.DEFAULT_CMDLINE + ' page_poison=1')
    report = scen.end_to_end(sc, selected=('simple', 'pipe'))
    assert report['free_pages']['fill'] == '0xaa'
    assert 'poison' in report['free_pages']['fill_reason']
    text = sc.guest.console_text()
    assert 'memory corruption' not in text and 'pagealloc' not in text
    with open(os.path.join(sc.workdir, 'report.json')) as f:
        assert json.load(f)['verification']['result'] == 'ok'
