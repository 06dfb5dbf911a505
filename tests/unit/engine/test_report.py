import json

import pytest

from sparc_nova.engine import report


def test_report_round_trip():
    r = report.ScrubReport(checkpoint='/x.save', selectors=['pid:5'])
    r.processes.append(report.ProcessPlan(
        pid=5, comm='app', exe='/bin/app', reasons=['matches pid:5'],
        threads=[5, 6], frames={'stack': [1, 2], 'heap': [3]},
        refused=[{'frame': '0x9', 'reason': 'shared'}],
        kill={'wakeup': 'timer'}))
    r.free_pages = {'frames': 10, 'frames_rewritten': 4, 'fill': '0x00'}
    r.lap('plan')
    d = json.loads(json.dumps(r.to_dict()))
    assert d['frames_scrubbed'] == 3
    assert d['frames_scrubbed_by_class']['stack'] == 2
    assert d['threads_killed'] == 2 and d['frames_refused'] == 1
    assert d['processes'][0]['frames']['heap'] == ['0x3']
    assert 'plan' in d['timings']
    assert list(r.scrubbed_frames()) == [1, 2, 3]
    s = r.summary()
    assert 'pid 5 app: 3 frames, 1 refused, 2 threads killed (timer)' in s
    assert 'frames_refused' in r.to_dict(frame_lists=False)['processes'][0]


def test_summary_of_a_scrub_while_saving():
    rep = report.ScrubReport(checkpoint='vm.save', output='vm.save')
    rep.timings = {'save': 2.9, 'after_save': 0.0}
    rep.during_save = {'image_complete_after': 1.3,
                       'scrub_overlapped_save': True}
    assert 'image complete after 1.30 s of a 2.90 s save; the scrub ended ' \
        '0.00 s after the save returned' in rep.summary()
    assert rep.to_dict()['during_save']['scrub_overlapped_save'] is True
    assert 'while saving' not in report.ScrubReport(
        checkpoint='x').summary()


def test_summary_escapes_guest_strings():
    rep = report.ScrubReport(checkpoint='vm.save')
    rep.kernel = {'osrelease': '6.1\x1b[2J'}
    rep.processes.append(report.ProcessPlan(
        pid=5, comm='a\x1b]0;x\x07\u202eb\nFAKE', exe=None, reasons=[],
        threads=[5], frames={}, refused=[], kill=None))
    rep.ipc = {'pulled_in': [{'pid': 6, 'comm': 'c\x9bd',
                              'edge': {'kind': 'pipe', 'from': 5}}]}
    rep.notes.append('note \x1b[31m')
    s = rep.summary()
    assert not any(c in s for c in '\x1b\x07\x9b\u202e')
    assert 'pid 5 a\\x1b]0;x\\x07\\u202eb\\nFAKE: 0 frames' in s
    assert 'kernel 6.1\\x1b[2J' in s and 'c\\x9bd' in s
    assert not [line for line in s.splitlines() if line.startswith('FAKE')]


def summary_of(frames, threads, free_frames, objects, not_scrubbed):
    rep = report.ScrubReport(checkpoint='vm.save')
    rep.processes.append(report.ProcessPlan(
        pid=5, comm='vault', exe=None, reasons=[],
        threads=list(range(threads)),
        frames={'heap': list(range(frames))}, refused=[],
        kill={'wakeup': 'futex'}))
    rep.free_pages = {'frames': free_frames, 'frames_rewritten': 1,
                      'fill': '0x00'}
    rep.ipc = {'scrubbed': {'pipe': {'objects': objects}},
               'not_scrubbed': [{}] * not_scrubbed}
    return rep.summary()


@pytest.mark.parametrize('count, expected', [
    (1, ['pid 5 vault: 1 frame, 0 refused, 1 thread killed (futex)',
         'free pages: 1 of 1 frame rewritten (fill 0x00)',
         'kernel copies scrubbed: pipe 1 object',
         '1 kernel copy not scrubbed (see the report)']),
    (2, ['pid 5 vault: 2 frames, 0 refused, 2 threads killed (futex)',
         'free pages: 1 of 2 frames rewritten (fill 0x00)',
         'kernel copies scrubbed: pipe 2 objects',
         '2 kernel copies not scrubbed (see the report)']),
])
def test_summary_words_follow_the_counts(count, expected):
    s = summary_of(frames=count, threads=count, free_frames=count,
                   objects=count, not_scrubbed=count)
    for line in expected:
        assert line in s


def test_summary_of_zero_counts():
    s = summary_of(frames=0, threads=0, free_frames=0, objects=0,
                   not_scrubbed=0)
    assert 'vault: 0 frames, 0 refused, 0 threads killed' in s
    assert 'not scrubbed' not in s and 'kernel copies scrubbed' not in s
