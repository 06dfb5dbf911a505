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
