"""Versioned sparc.scrub.* payloads, and the samples in the docs."""

import glob
import json
import os

import pytest

from sparc_nova import notification_payloads as payloads
from sparc_nova import notifications
from sparc_nova import policy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SAMPLES = sorted(glob.glob(os.path.join(ROOT, 'doc', 'notification_samples',
                                        '*.json')))
DATA = 'sparc_nova_object.data'


def _payload(**extra):
    effective = policy.from_sources(instance={
        'sparc:exclude_processes': 'vault',
        'sparc:exclude_paths': '/secrets/**'})
    data = {'instance_uuid': '7f0c2a44-54c4-4a4e-9c6d-0f6a1e0b9d11',
            'operation': 'snapshot', 'host': 'compute1',
            'policy': notifications.policy_payload(effective),
            'policy_digest': effective.digest, 'image_id': 'img'}
    data.update(extra)
    return data


def test_samples_present():
    assert [os.path.basename(s) for s in SAMPLES] == [
        'sparc.scrub.end.json', 'sparc.scrub.error.json',
        'sparc.scrub.start.json']


@pytest.mark.parametrize('path', SAMPLES, ids=os.path.basename)
def test_sample_is_the_current_version_with_every_field(path):
    with open(path) as f:
        sample = json.load(f)['payload']
    obj = payloads.SparcScrubPayload.obj_from_primitive(sample)
    assert sample['sparc_nova_object.version'] == obj.VERSION
    assert set(sample[DATA]) == set(payloads.SparcScrubPayload.fields)
    assert set(sample[DATA]['policy'][DATA]) == set(
        payloads.SparcScrubPolicyPayload.fields)


def test_payload_round_trip_and_no_change_list():
    prim = payloads.scrub_payload(_payload(summary='s', seconds=1.5)
                                  ).obj_to_primitive()
    assert 'sparc_nova_object.changes' not in prim
    assert 'sparc_nova_object.changes' not in prim[DATA]['policy']
    data = prim[DATA]
    assert data['summary'] == 's' and data['error'] is None
    assert data['policy'][DATA]['exclude_paths_count'] == 1
    assert data['policy'][DATA]['exclude_paths'] is None
    back = payloads.SparcScrubPayload.obj_from_primitive(prim)
    assert back.policy.digest == _payload()['policy_digest']


def test_unknown_key_needs_a_new_version():
    with pytest.raises(ValueError, match=r"\['guest_file'\]"):
        payloads.scrub_payload(_payload(guest_file='/etc/shadow'))
