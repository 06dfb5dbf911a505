"""Where the libvirt driver's snapshot bytes are intercepted.

``LibvirtDriver.snapshot()`` (createImage, backup, shelve) writes the disk
image to a temporary file and hands it, opened, to
``self._image_api.update(context, image_id, metadata, image_file)``. The
driver replaces ``_image_api`` with :class:`ScrubbingImageAPI`, which
scrubs that file before any byte reaches Glance, and ``image_backend``
with :class:`PolicyAwareImageBackend`, which turns off the rbd direct
snapshot (a Ceph clone made straight in Glance's pool, which no scrub can
see) for the instances being snapshotted with a policy.

:class:`SnapshotJobs` ties a snapshot's image id to its instance and
policy while ``snapshot()`` runs.
"""

import contextlib
import dataclasses
import os
import threading
from typing import Any, Iterator

from oslo_log import log as logging

from sparc_nova import policy
from sparc_nova.virt import exception as virt_exception
from sparc_nova.virt import scrubber

LOG = logging.getLogger(__name__)


@dataclasses.dataclass
class SnapshotJob:
    """A snapshot in progress of an instance whose checkpoints are
    policed (or whose image carries records of an earlier scrub).
    """

    context: Any
    instance: Any
    image_id: str
    policy: policy.EffectivePolicy
    #: Set once the checkpoint the scrub left was uploaded to this image
    #: through :class:`ScrubbingImageAPI` (and Glance, when it reports a
    #: size, holds as many bytes): the driver checks it after the
    #: snapshot.
    uploaded: bool = False


class SnapshotJobs:
    """The snapshots in progress on this host, by image and instance."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_image: dict[str, SnapshotJob] = {}
        self._by_instance: dict[str, list[SnapshotJob]] = {}

    @contextlib.contextmanager
    def running(self, job: SnapshotJob) -> Iterator[SnapshotJob]:
        """Register ``job`` for the duration of the block."""
        uuid = job.instance.uuid
        with self._lock:
            self._by_image[job.image_id] = job
            self._by_instance.setdefault(uuid, []).append(job)
        try:
            yield job
        finally:
            with self._lock:
                self._by_image.pop(job.image_id, None)
                self._by_instance[uuid].remove(job)
                if not self._by_instance[uuid]:
                    del self._by_instance[uuid]

    def for_image(self, image_id: str) -> SnapshotJob | None:
        with self._lock:
            return self._by_image.get(image_id)

    def snapshotting(self, instance_uuid: str) -> bool:
        """Whether a snapshot of the instance is in progress here."""
        with self._lock:
            return instance_uuid in self._by_instance

    def policed(self, instance_uuid: str) -> bool:
        """Whether a snapshot of the instance with a policy that excludes
        something is in progress here.
        """
        with self._lock:
            return any(job.policy.excludes_anything
                       for job in self._by_instance.get(instance_uuid, ()))


class ScrubbingImageAPI:
    """A stand-in for ``nova.image.glance.API`` whose ``update`` uploads
    only scrubbed snapshot data. Every other call goes to the real API.

    :param image_api: the API object to wrap
    :param jobs: the snapshots in progress
    :param scrub: the scrubber that scrubs the file before the upload
    """

    def __init__(self, image_api, jobs: SnapshotJobs,
                 scrub: scrubber.Scrubber):
        self._image_api = image_api
        self._jobs = jobs
        self._scrubber = scrub

    def __getattr__(self, name):
        return getattr(self._image_api, name)

    def update(self, context, image_id, image_meta, data=None,
               purge_props=False):
        job = self._jobs.for_image(image_id)
        if job is None:
            return self._image_api.update(context, image_id, image_meta,
                                          data, purge_props=purge_props)
        if not job.policy.excludes_anything:
            return self._image_api.update(
                context, image_id,
                _with_properties(image_meta,
                                 scrubber.no_policy_properties()),
                data, purge_props=purge_props)
        if data is None:
            if image_meta.get('location'):
                raise virt_exception.SparcScrubFailed(
                    what='snapshot %s' % image_id,
                    instance_uuid=job.instance.uuid,
                    reason='its data was about to reach Glance without '
                           'passing through the scrub (direct snapshot)')
            return self._image_api.update(context, image_id, image_meta,
                                          purge_props=purge_props)
        src = getattr(data, 'name', None)
        if not isinstance(src, str) or not os.path.isfile(src):
            raise virt_exception.SparcScrubFailed(
                what='snapshot %s' % image_id,
                instance_uuid=job.instance.uuid,
                reason='the snapshot data is not a file that can be '
                       'scrubbed')
        outcome = self._scrubber.snapshot_file(
            job.context, job.instance, job.policy, job.image_id, src,
            image_meta.get('disk_format'))
        image_meta = _with_properties(image_meta,
                                      outcome.image_properties())
        if outcome.path == src:
            return self._upload(job, context, image_meta, data,
                                purge_props)
        try:
            with open(outcome.path, 'rb') as scrubbed:
                return self._upload(job, context, image_meta, scrubbed,
                                    purge_props)
        finally:
            scrubber.remove_quietly(outcome.path)

    def _upload(self, job: SnapshotJob, context, image_meta: dict, data,
                purge_props: bool):
        """Upload ``data`` (an open file) to the job's image and mark the
        job uploaded if Glance does not report another size.
        """
        try:
            size = os.fstat(data.fileno()).st_size
        except (AttributeError, OSError, ValueError):
            size = None
        result = self._image_api.update(context, job.image_id, image_meta,
                                        data, purge_props=purge_props)
        stored = (result or {}).get('size')
        if isinstance(stored, int) and size not in (None, stored):
            LOG.error('Glance holds %(stored)d bytes of snapshot %(image)s; '
                      'the scrubbed file has %(size)d',
                      {'stored': stored, 'image': job.image_id,
                       'size': size}, instance=job.instance)
        else:
            job.uploaded = True
        return result


def _with_properties(image_meta: dict, properties: dict) -> dict:
    updated = dict(image_meta)
    updated['properties'] = dict(image_meta.get('properties') or {},
                                 **properties)
    return updated


class PolicyAwareImageBackend:
    """A stand-in for ``nova.virt.libvirt.imagebackend.Backend`` that turns
    off ``direct_snapshot`` of the disks of instances being snapshotted
    with a policy, so that the driver falls back to its standard path
    (a local file, which is scrubbed).
    """

    def __init__(self, backend, jobs: SnapshotJobs):
        self._backend = backend
        self._jobs = jobs

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def by_libvirt_path(self, instance, path, image_type=None):
        disk = self._backend.by_libvirt_path(instance, path,
                                             image_type=image_type)
        if self._jobs.policed(instance.uuid):
            disk.direct_snapshot = _no_direct_snapshot
        return disk


def _no_direct_snapshot(*args, **kwargs):
    raise NotImplementedError('direct snapshot is off for instances with a '
                              'privacy policy: their snapshots are '
                              'scrubbed from a local file')
