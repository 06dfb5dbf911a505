"""Memory figures of the scrub's processes, from /proc."""

import subprocess
import sys
import time

from sparc_nova.engine import memstats

STATUS = """Name:\tpython3
VmPeak:\t  500000 kB
VmHWM:\t  204800 kB
VmRSS:\t  102400 kB
RssAnon:\t   51200 kB
RssFile:\t   51200 kB
Threads:\t1
"""


def test_parse_status():
    m = memstats.parse_status(STATUS)
    assert m == memstats.ProcessMemory(rss=100 << 20, peak_rss=200 << 20,
                                       private=50 << 20)
    # A zombie (or kernel thread) has no memory lines.
    assert memstats.parse_status('Name:\tx\nState:\tZ (zombie)\n') is None
    assert memstats.parse_status(STATUS.replace('kB', 'MB')) is None


def test_from_dict_refuses_out_of_shape():
    ok = {'rss': 1, 'peak_rss': 2, 'private': 0}
    assert memstats.ProcessMemory.from_dict(ok) == \
        memstats.ProcessMemory(1, 2, 0)
    for bad in ({'rss': 1, 'peak_rss': 2}, {**ok, 'rss': True},
                {**ok, 'rss': 1 << 60}, {**ok, 'private': -1}, [1, 2, 3],
                None):
        assert memstats.ProcessMemory.from_dict(bad) is None


def test_own_figures():
    m = memstats.read_status()
    assert m is not None and 0 < m.private <= m.rss <= m.peak_rss
    with open('/proc/self/status', 'rb') as f:
        mine = memstats.own_figures(f.fileno())
    assert mine['rss'] > 0 and mine['peak_rss'] >= mine['rss']


def test_sampler_peaks_of_this_process_and_a_child():
    child = subprocess.Popen([sys.executable, '-c',
                              'b = bytearray(b"x") * (48 << 20); '
                              'import time; time.sleep(0.5)'])
    try:
        with memstats.MemorySampler(interval=0.01) as sampler:
            held = bytearray(b'y') * (32 << 20)
            sampler.watch('child', child.pid)
            child.wait(30)
            time.sleep(0.05)
        del held
    finally:
        child.kill()
        child.wait()
    figures = sampler.figures()
    assert set(figures) == {'peak_rss_mib', 'peak_private_mib',
                            'child_peak_rss_mib', 'child_peak_private_mib'}
    assert figures['peak_private_mib'] >= 32
    assert figures['peak_rss_mib'] >= figures['peak_private_mib']
    # The child's peak RSS is its VmHWM (exact); its private memory was
    # sampled while it held its 48 MiB.
    assert figures['child_peak_rss_mib'] >= 48
    assert figures['child_peak_private_mib'] >= 48


def test_noted_figures_count_as_a_sample():
    sampler = memstats.MemorySampler()
    sampler.note('sandbox', memstats.ProcessMemory(
        rss=10 << 20, peak_rss=300 << 20, private=120 << 20))
    figures = sampler.figures()
    assert figures['sandbox_peak_rss_mib'] == 300.0
    assert figures['sandbox_peak_private_mib'] == 120.0


def test_give_back_free_memory():
    memstats.give_back_free_memory()    # glibc here; never raises
