"""Where snapshot bytes are intercepted: the image API and image backend
stand-ins.
"""

import io
from unittest import mock

import pytest

from sparc_nova.virt import exception as virt_exception
from sparc_nova.virt.libvirt import snapshot
from sparc_nova.virt import scrubber
from tests.unit.virt import fakes


class RecordingImageAPI:
    """Records what each update() would send to Glance."""

    def __init__(self):
        self.updates = []

    def update(self, context, image_id, image_meta, data=None,
               purge_props=False):
        self.updates.append({'image_id': image_id, 'meta': image_meta,
                             'data': data.read() if data else None,
                             'purge_props': purge_props})
        return image_meta

    def get(self, context, image_id):
        return {'id': image_id}


@pytest.fixture
def jobs():
    return snapshot.SnapshotJobs()


@pytest.fixture
def glance():
    return RecordingImageAPI()


def make_api(glance, jobs, scrub=None):
    """The wrapper with a scrubber whose ``snapshot_file`` calls
    ``scrub(job, path, disk_format)``.
    """
    scrub = scrub or mock.Mock(name='scrub')
    fake = mock.Mock(spec=scrubber.Scrubber)
    fake.snapshot_file.side_effect = (
        lambda context, instance, policy, image_id, path, disk_format:
        scrub(jobs.for_image(image_id), path, disk_format))
    return snapshot.ScrubbingImageAPI(glance, jobs, fake)


def job(effective, image_id='img-1'):
    return snapshot.SnapshotJob('ctx', fakes.instance(), image_id,
                                effective)


def snapshot_file(tmp_path, data=b'SECRET disk'):
    path = tmp_path / 'snap'
    path.write_bytes(data)
    return path


def test_other_images_pass_through(glance, jobs, tmp_path):
    api = make_api(glance, jobs)
    with open(snapshot_file(tmp_path), 'rb') as f:
        api.update('ctx', 'other', {'name': 'x'}, f, purge_props=True)
    assert glance.updates == [{'image_id': 'other', 'meta': {'name': 'x'},
                               'data': b'SECRET disk', 'purge_props': True}]
    assert api.get('ctx', 'other') == {'id': 'other'}


def test_policed_snapshot_uploads_the_scrubbed_copy(glance, jobs, tmp_path):
    src = snapshot_file(tmp_path)
    dst = tmp_path / ('snap' + scrubber.SCRUBBED_SUFFIX)
    effective = fakes.effective(exclude_paths='/secret')

    def scrub(job_, path, disk_format):
        assert path == str(src) and disk_format == 'qcow2'
        dst.write_bytes(b'clean disk')
        return scrubber.Outcome(True, 'removed 1 file', effective.digest,
                                path=str(dst))

    api = make_api(glance, jobs, scrub)
    with jobs.running(job(effective)):
        with open(src, 'rb') as f:
            api.update('ctx', 'img-1', {'disk_format': 'qcow2',
                                        'properties': {'kernel_id': 'k'}}, f)
    [update] = glance.updates
    assert update['data'] == b'clean disk'
    assert update['meta']['properties'] == {
        'kernel_id': 'k', 'sparc_scrubbed': 'true',
        'sparc_policy_digest': effective.digest,
        'sparc_scrub_summary': 'removed 1 file'}
    assert not dst.exists()


def test_unscrubbed_outcome_uploads_the_original(glance, jobs, tmp_path):
    src = snapshot_file(tmp_path)
    effective = fakes.effective(exclude_processes='vault')
    scrub = mock.Mock(return_value=scrubber.Outcome(
        False, 'the policy excludes no guest paths', effective.digest,
        path=str(src)))
    api = make_api(glance, jobs, scrub)
    with jobs.running(job(effective)):
        with open(src, 'rb') as f:
            api.update('ctx', 'img-1', {'disk_format': 'raw'}, f)
    [update] = glance.updates
    assert update['data'] == b'SECRET disk'
    assert update['meta']['properties']['sparc_scrubbed'] == 'false'
    assert src.exists()


def test_scrub_failure_sends_nothing(glance, jobs, tmp_path):
    error = virt_exception.SparcScrubFailed(what='snapshot img-1',
                                            instance_uuid='u', reason='x')
    api = make_api(glance, jobs, mock.Mock(side_effect=error))
    with jobs.running(job(fakes.effective(exclude_paths='/a'))):
        with open(snapshot_file(tmp_path), 'rb') as f:
            with pytest.raises(virt_exception.SparcScrubFailed):
                api.update('ctx', 'img-1', {'disk_format': 'qcow2'}, f)
    assert glance.updates == []


def test_data_that_is_not_a_file_is_refused(glance, jobs):
    api = make_api(glance, jobs)
    with jobs.running(job(fakes.effective(exclude_paths='/a'))):
        with pytest.raises(virt_exception.SparcScrubFailed) as e:
            api.update('ctx', 'img-1', {}, io.BytesIO(b'SECRET'))
    assert 'not a file that can be scrubbed' in e.value.format_message()
    assert glance.updates == []


def test_location_without_data_is_refused(glance, jobs):
    api = make_api(glance, jobs)
    with jobs.running(job(fakes.effective(exclude_paths='/a'))):
        with pytest.raises(virt_exception.SparcScrubFailed) as e:
            api.update('ctx', 'img-1', {'location': 'rbd://pool/x'})
        api.update('ctx', 'img-1', {'name': 'metadata only'})
    assert 'without passing through the scrub' in e.value.format_message()
    assert [u['meta'] for u in glance.updates] == [{'name': 'metadata only'}]


def test_instance_without_policy_gets_records_overwritten(glance, jobs,
                                                          tmp_path):
    scrub = mock.Mock()
    api = make_api(glance, jobs, scrub)
    with jobs.running(job(fakes.effective())):
        with open(snapshot_file(tmp_path), 'rb') as f:
            api.update('ctx', 'img-1', {'properties': {'a': 'b'}}, f)
    assert scrub.call_count == 0
    [update] = glance.updates
    assert update['data'] == b'SECRET disk'
    assert update['meta']['properties'] == dict(
        a='b', **scrubber.no_policy_properties())


def test_jobs_registry(jobs):
    policed = job(fakes.effective(exclude_paths='/a'))
    plain = job(fakes.effective(), image_id='img-2')
    assert not jobs.snapshotting(fakes.INSTANCE_UUID)
    with jobs.running(plain):
        assert jobs.snapshotting(fakes.INSTANCE_UUID)
        assert not jobs.policed(fakes.INSTANCE_UUID)
        with jobs.running(policed):
            assert jobs.policed(fakes.INSTANCE_UUID)
            assert jobs.for_image('img-1') is policed
        assert not jobs.policed(fakes.INSTANCE_UUID)
        assert jobs.for_image('img-1') is None
    assert not jobs.snapshotting(fakes.INSTANCE_UUID)


def test_backend_turns_off_direct_snapshot_for_policed_instances(jobs):
    backend = mock.Mock()
    backend.by_libvirt_path.side_effect = lambda *a, **k: mock.Mock()
    wrapped = snapshot.PolicyAwareImageBackend(backend, jobs)
    inst = fakes.instance()
    disk = wrapped.by_libvirt_path(inst, '/p', image_type='rbd')
    disk.direct_snapshot()             # untouched: a mock
    with jobs.running(job(fakes.effective(exclude_paths='/a'))):
        disk = wrapped.by_libvirt_path(inst, '/p', image_type='rbd')
        with pytest.raises(NotImplementedError):
            disk.direct_snapshot('ctx', 'name', 'raw', 'img-1', 'base')
    backend.by_libvirt_path.assert_called_with(inst, '/p', image_type='rbd')
    assert wrapped.backend is backend.backend
