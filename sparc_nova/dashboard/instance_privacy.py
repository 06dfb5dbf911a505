"""The privacy state of one instance, as the Privacy panel shows it.

Plain data built from what the APIs return (no Django, no requests): the
three policy sources of the instance, its effective policy computed by
:mod:`sparc_nova.policy` (the code the Nova driver and ``sparc policy
check`` use), and the scrub records of its latest snapshot.
"""

import dataclasses
import datetime
from typing import Iterable, Mapping

from sparc_nova import exception
from sparc_nova import policy

#: Glance statuses of an image still being written.
PENDING_IMAGE_STATUSES = ('queued', 'saving', 'uploading', 'importing')
#: Glance statuses of an image that will never hold a snapshot.
FAILED_IMAGE_STATUSES = ('killed', 'deleted', 'pending_delete')
#: Nova task states of an instance whose snapshot is being taken.
SNAPSHOT_TASK_STATES = ('image_snapshot', 'image_snapshot_pending',
                        'image_pending_upload', 'image_uploading',
                        'image_backup', 'shelving_image_pending_upload',
                        'shelving_image_uploading')

#: Nova's status of a suspended instance.
SUSPENDED = 'SUSPENDED'

#: Scrub states of a snapshot.
SCRUB_PENDING = 'pending'
SCRUB_DONE = 'scrubbed'
SCRUB_UNSCRUBBED = 'unscrubbed'
SCRUB_NO_RECORD = 'no_record'
SCRUB_FAILED = 'failed'

#: Nova instance actions that make a snapshot image the driver scrubs.
SNAPSHOT_ACTIONS = ('createImage', 'createBackup', 'shelve')
#: Nova instance actions (the names of ``nova.compute.instance_actions``)
#: that the compute driver makes fail when the privacy policy forbids
#: them or its scrub fails, adding a ``sparc-nova:`` event that says why
#: (``sparc_nova.virt.tenant_report``): snapshots, backups and shelves
#: (``snapshot``), suspends, crash dumps, live and cold migrations and
#: resizes.
POLICED_ACTIONS = SNAPSHOT_ACTIONS + ('suspend', 'trigger_crash_dump',
                                      'live-migration', 'migrate', 'resize')


def policy_keys(pairs: Mapping[str, str] | None,
                source: str) -> dict[str, str] | None:
    """The sparc-nova policy keys of one source (``None`` stays ``None``:
    the source could not be read). The records sparc-nova leaves on the
    images it scrubbed are not policy and are left out.
    """
    return policy.keys_of(pairs, source)


@dataclasses.dataclass
class SnapshotRecord:
    """A snapshot image of an instance and what sparc-nova recorded on it
    (``sparc_scrubbed``, ``sparc_policy_digest``, ``sparc_scrub_summary``).
    """

    image_id: str
    name: str
    status: str
    created_at: str
    properties: dict[str, str]

    @classmethod
    def from_image(cls, image) -> 'SnapshotRecord':
        """From a Glance image of ``openstack_dashboard.api.glance``."""
        return cls(image_id=image.id, name=image.name or '',
                   status=(image.status or '').lower(),
                   created_at=image.created_at or '',
                   properties=dict(image.properties or {}))

    @property
    def scrubbed(self) -> bool | None:
        """``sparc_scrubbed`` as a boolean; None when not recorded."""
        value = self.properties.get(policy.SCRUBBED_PROPERTY)
        if value is None:
            return None
        return str(value).strip().lower() == 'true'

    @property
    def summary(self) -> str:
        return self.properties.get(policy.SUMMARY_PROPERTY) or ''

    @property
    def digest(self) -> str:
        return self.properties.get(policy.DIGEST_PROPERTY) or ''

    @property
    def state(self) -> str:
        """One of the ``SCRUB_*`` states."""
        if self.status in FAILED_IMAGE_STATUSES:
            return SCRUB_FAILED
        scrubbed = self.scrubbed
        if scrubbed is True:
            return SCRUB_DONE
        if scrubbed is False:
            return SCRUB_UNSCRUBBED
        if self.status in PENDING_IMAGE_STATUSES:
            return SCRUB_PENDING
        return SCRUB_NO_RECORD


def parse_time(text: str | None) -> datetime.datetime | None:
    """An API timestamp (Nova: naive UTC, Glance: ``Z``) as aware UTC."""
    if not text:
        return None
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value


@dataclasses.dataclass
class InstanceRequest:
    """One request in the instance's Nova action log (an instance action:
    ``createImage``, ``suspend``, ...), whether it failed (Nova marks a
    failed action ``Error``) and, when the privacy policy made it fail,
    why (see :func:`policy_reason`; None until looked up, or when the
    request did not fail because of the policy).
    """

    action: str
    request_id: str
    start_time: str
    failed: bool
    reason: str | None = None
    #: Whether the compute driver recorded a sealed suspend on this
    #: request (:func:`sealed_event`); None while its events are unread.
    sealed: bool | None = None

    @classmethod
    def from_action(cls, action) -> 'InstanceRequest | None':
        """From a Nova instance action (novaclient object); None when it
        has no readable start time.
        """
        start_time = getattr(action, 'start_time', None)
        if parse_time(start_time) is None:
            return None
        return cls(action=getattr(action, 'action', None) or '',
                   request_id=getattr(action, 'request_id', None) or '',
                   start_time=start_time,
                   failed=getattr(action, 'message', None) == 'Error')

    @property
    def started(self) -> datetime.datetime:
        """:attr:`start_time` as aware UTC."""
        return parse_time(self.start_time)

    @property
    def refused(self) -> bool:
        """The request failed and the compute driver said the privacy
        policy is why.
        """
        return self.failed and bool(self.reason)


def newest_requests(actions: Iterable,
                    names: Iterable[str] = POLICED_ACTIONS
                    ) -> dict[str, InstanceRequest]:
    """The newest request of each Nova action in ``names`` (the action
    log of one instance, novaclient objects), keyed by action name.
    """
    wanted = frozenset(names)
    newest: dict[str, InstanceRequest] = {}
    for action in actions:
        if getattr(action, 'action', None) not in wanted:
            continue
        request = InstanceRequest.from_action(action)
        if request is None:
            continue
        known = newest.get(request.action)
        if known is None or request.started > known.started:
            newest[request.action] = request
    return newest


def newest_of(requests: Iterable[InstanceRequest]
              ) -> InstanceRequest | None:
    """The request that started last, or None."""
    return max(requests, key=lambda r: r.started, default=None)


#: The compute driver names the events it adds to a request that the
#: privacy policy made fail with this prefix and the reason.
POLICY_EVENT_PREFIX = 'sparc-nova: '
#: The event the compute driver adds (result ``Success``) to a suspend
#: request whose excluded processes it sealed (``sparc:suspend=seal``):
#: their memory is encrypted in the saved state and they continue after
#: resume.
SEALED_EVENT = POLICY_EVENT_PREFIX + 'sealed'
#: Nova's result of an instance-action event that succeeded.
EVENT_SUCCESS = 'Success'


def _event_field(event, field: str) -> str:
    value = (event.get(field) if isinstance(event, dict)
             else getattr(event, field, None))
    return value or ''


def policy_reason(events: Iterable) -> str | None:
    """Why the privacy policy made a request fail, from the events of its
    Nova instance action (dicts with an ``event`` name, as members see
    them from microversion 2.51), or None.
    """
    for event in events or ():
        name = _event_field(event, 'event')
        if name.startswith(POLICY_EVENT_PREFIX) and name != SEALED_EVENT:
            return name[len(POLICY_EVENT_PREFIX):]
    return None


def sealed_event(events) -> bool:
    """Whether the events of a suspend request (as for
    :func:`policy_reason`) hold the compute driver's :data:`SEALED_EVENT`
    with result ``Success``.
    """
    return any(_event_field(e, 'event') == SEALED_EVENT and
               _event_field(e, 'result') == EVENT_SUCCESS
               for e in events or ())


def latest_snapshots(images: Iterable) -> dict[str, SnapshotRecord]:
    """The newest snapshot of each instance, keyed by instance id, from
    Glance images (Nova records the instance in ``instance_uuid``).
    """
    latest: dict[str, SnapshotRecord] = {}
    for image in images:
        instance_id = (image.properties or {}).get('instance_uuid')
        if not instance_id:
            continue
        record = SnapshotRecord.from_image(image)
        known = latest.get(instance_id)
        if known is None or record.created_at > known.created_at:
            latest[instance_id] = record
    return latest


@dataclasses.dataclass
class InstancePrivacy:
    """One instance with its policy sources, effective policy and latest
    snapshot.

    ``sources`` holds the sparc-nova keys of each source; a source is
    ``None`` when it could not be read (flavor extra specs hidden by
    policy, image deleted or not visible): the effective policy then
    leaves it out and :attr:`incomplete` says so.
    """

    id: str
    name: str
    status: str
    task_state: str | None
    tenant_id: str | None
    sources: dict[str, dict[str, str] | None]
    last_snapshot: SnapshotRecord | None = None
    on_failure_allow_from: tuple[str, ...] = (policy.FLAVOR,)
    #: The newest request of each of :data:`POLICED_ACTIONS` in Nova's
    #: action log, keyed by action name; empty when not looked up.
    requests: dict[str, InstanceRequest] = dataclasses.field(
        default_factory=dict)
    effective: policy.EffectivePolicy | None = dataclasses.field(
        init=False, default=None)
    problems: list[policy.Problem] = dataclasses.field(
        init=False, default_factory=list)

    def __post_init__(self):
        try:
            self.effective = policy.from_sources(
                flavor=self.sources.get(policy.FLAVOR) or {},
                image=self.sources.get(policy.IMAGE) or {},
                instance=self.sources.get(policy.INSTANCE) or {},
                on_failure_allow_from=self.on_failure_allow_from)
        except exception.InvalidPolicy as e:
            self.problems = list(e.problems)

    @classmethod
    def from_server(cls, server, flavor_specs: Mapping[str, str] | None,
                    image_properties: Mapping[str, str] | None,
                    last_snapshot: SnapshotRecord | None = None,
                    on_failure_allow_from: Iterable[str] = (policy.FLAVOR,)
                    ) -> 'InstancePrivacy':
        """From a Nova server of ``openstack_dashboard.api.nova`` and what
        its flavor and image say (``None``: could not be read).
        """
        return cls(
            id=server.id, name=server.name or server.id,
            status=(server.status or '').upper(),
            task_state=getattr(server, 'OS-EXT-STS:task_state', None),
            tenant_id=getattr(server, 'tenant_id', None),
            sources={
                policy.FLAVOR: policy_keys(flavor_specs, policy.FLAVOR),
                policy.IMAGE: policy_keys(image_properties, policy.IMAGE),
                policy.INSTANCE: policy_keys(server.metadata or {},
                                             policy.INSTANCE)},
            last_snapshot=last_snapshot,
            on_failure_allow_from=tuple(on_failure_allow_from))

    @property
    def valid(self) -> bool:
        return self.effective is not None

    @property
    def excludes_anything(self) -> bool:
        return self.valid and self.effective.excludes_anything

    @property
    def incomplete(self) -> list[str]:
        """The sources that could not be read."""
        return [s for s in policy.SOURCES if self.sources.get(s) is None]

    @property
    def instance_keys(self) -> list[str]:
        """The instance metadata keys that hold the tenant's part."""
        return sorted(self.sources.get(policy.INSTANCE) or {})

    def part(self, source: str) -> policy.PolicyPart | None:
        """What one source sets; None when it is unreadable or invalid."""
        pairs = self.sources.get(source)
        if pairs is None:
            return None
        try:
            return policy.parse(pairs, source)
        except exception.InvalidPolicy:
            return None

    def problems_of(self, source: str) -> list[policy.Problem]:
        return [p for p in self.problems if p.source == source]

    @property
    def scrubs_snapshots(self) -> bool:
        """Whether a snapshot of the instance goes through a scrub (or
        fails on the policy's problems).
        """
        return not self.valid or self.excludes_anything

    @property
    def may_be_policed(self) -> bool:
        """Whether the compute driver may refuse operations on the
        instance: its policy excludes something, is invalid, or has a
        source the user cannot read (which may exclude something).
        """
        return self.scrubs_snapshots or bool(self.incomplete)

    @property
    def suspended(self) -> bool:
        return self.status == SUSPENDED

    @property
    def sealed(self) -> bool | None:
        """Whether the suspended instance is sealed: its newest suspend
        request carries :data:`SEALED_EVENT`. False when it is not
        suspended or that suspend did not seal; None when suspended and
        the suspend's events could not be read (or no suspend request is
        in the action log).
        """
        if not self.suspended:
            return False
        request = self.requests.get('suspend')
        return None if request is None else request.sealed

    @property
    def wants_requests(self) -> bool:
        """Whether the rows look up the instance's action log: the driver
        may refuse its operations, or it is suspended (sealed or not).
        """
        return self.may_be_policed or self.suspended

    @property
    def last_request(self) -> InstanceRequest | None:
        """The newest request that makes a snapshot image."""
        return newest_of(self.requests[a] for a in SNAPSHOT_ACTIONS
                         if a in self.requests)

    @property
    def refused_requests(self) -> list[InstanceRequest]:
        """The requests the privacy policy made fail, newest first: of
        each action, only its newest request counts, so a later request
        of the same action that did not fail (or failed for another
        reason) hides an older refusal: the refusal no longer says what
        that operation does now.
        """
        refused = [r for r in self.requests.values() if r.refused]
        return sorted(refused, key=lambda r: r.started, reverse=True)

    @property
    def last_request_failed(self) -> bool:
        """The newest snapshot request failed and left no newer image:
        the scrub (or the snapshot) failed and nothing was kept.
        """
        request = self.last_request
        if request is None or not request.failed:
            return False
        if self.last_snapshot is None:
            return True
        made = parse_time(self.last_snapshot.created_at)
        return made is None or parse_time(request.start_time) > made

    @property
    def snapshot_in_progress(self) -> bool:
        """A snapshot is being taken and its record has not landed."""
        if self.task_state in SNAPSHOT_TASK_STATES:
            return True
        return (self.last_snapshot is not None and
                self.last_snapshot.state == SCRUB_PENDING)
