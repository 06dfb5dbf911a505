import json

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
