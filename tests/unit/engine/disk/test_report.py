"""The scrub report."""

import json

from sparc_nova.engine.disk import report


def test_paths_are_hashed_unless_revealed():
    r = report.ScrubReport('s', 'd', 'qcow2')
    assert r.name('/home/a/secret') == 'sha256:' + report.path_digest(
        '/home/a/secret')
    assert report.ScrubReport('s', 'd', 'raw',
                              reveal_paths=True).name('/x') == '/x'


def test_json_serialisable_and_verified_flag():
    r = report.ScrubReport('s', 'd', 'qcow2')
    r.volumes.append(report.VolumeReport('/dev/sda1', 'filesystem', 'ext4'))
    r.removed.append(report.RemovedPath(r.name('/a'), 'file', 3, '/a',
                                        '/dev/sda1'))
    data = json.loads(json.dumps(r.to_dict()))
    assert data['verified'] is True
    assert data['removed'][0]['path'].startswith('sha256:')
    r.volumes.append(report.VolumeReport('/dev/sda2', 'luks',
                                         verification=report.UNVERIFIED))
    assert r.to_dict()['verified'] is False


def test_notes_are_in_the_json():
    r = report.ScrubReport('s', 'd', 'qcow2')
    r.notes.append('started on TCG')
    assert json.loads(json.dumps(r.to_dict()))['notes'] == ['started on TCG']
