"""Forms of the Privacy panel: the instance's policy, a private snapshot.

Every check of a policy value is :func:`sparc_nova.policy.parse`, the code
the Nova driver and ``sparc policy check`` run, and every error message is
its message, word for word.
"""

from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from horizon import exceptions
from horizon import forms
from horizon import messages

from openstack_dashboard import api as horizon_api

from sparc_nova.dashboard import instance_privacy
from sparc_nova import exception
from sparc_nova import policy

#: The form's fields, one per policy key.
LIST_FIELDS = policy.LIST_KEYS
CHOICE_FIELDS = policy.BOOL_KEYS + tuple(policy.CHOICE_KEYS)

LIST_HELP = {
    policy.EXCLUDE_PROCESSES: _(
        "Processes whose memory is never checkpointed, one per line or "
        "comma-separated: NAME (at most 15 characters), exe:/PATH/GLOB, "
        "pid:N, uid:N, cgroup:PATH. They are terminated when the checkpoint "
        "is restored."),
    policy.EXCLUDE_PATHS: _(
        "Guest files removed from disk snapshots, one glob per line or "
        "comma-separated: * and ? within a name, ** for any depth, "
        "!GLOB keeps a file one of these globs matched (never one the "
        "flavor or the image names), preset:NAME."),
}
LABELS = {
    policy.EXCLUDE_PROCESSES: _("Excluded processes"),
    policy.EXCLUDE_PATHS: _("Excluded paths"),
    policy.FOLLOW_IPC: _("Follow IPC"),
    policy.SCRUB_FREE_MEMORY: _("Scrub free memory"),
    policy.ON_FAILURE: _("On failure"),
    policy.SUSPEND: _("Suspend"),
}
CHOICE_HELP = {
    policy.FOLLOW_IPC: _("Also scrub what the excluded processes hold in "
                         "pipes and sockets."),
    policy.SCRUB_FREE_MEMORY: _("Also scrub the guest's free memory, where "
                                "exited processes leave copies."),
    policy.ON_FAILURE: _("abort: a checkpoint that cannot be scrubbed is "
                         "not kept. allow: it is kept unscrubbed and says "
                         "so (only where the operator permits it)."),
}

#: The suspend modes (``sparc:suspend``) the form offers, in this order,
#: and what each does.
SUSPEND_MODES = ('scrub', 'seal', 'refuse')
SUSPEND_HELP = {
    'scrub': _("scrub: the excluded processes' memory is zeroed in the "
               "saved state; they are gone after resume."),
    'seal': _("seal: their memory is encrypted in the saved state with a "
              "key kept in the project's key manager; they continue after "
              "resume."),
    'refuse': _("refuse: suspend is refused."),
}
CHOICE_HELP[policy.SUSPEND] = format_lazy(
    '{} {} {}', *(SUSPEND_HELP[m] for m in SUSPEND_MODES))


def choice_values(key: str) -> tuple[str, ...]:
    """The values the form offers for a choice key: the policy module's,
    and for ``suspend`` :data:`SUSPEND_MODES` first. Whatever is picked
    is checked by :func:`sparc_nova.policy.parse` like any value.
    """
    known = tuple(policy.CHOICE_KEYS[key])
    if key != policy.SUSPEND:
        return known
    return SUSPEND_MODES + tuple(v for v in known if v not in SUSPEND_MODES)


def _choices(key: str) -> list[tuple[str, str]]:
    if key in policy.BOOL_KEYS:
        default = 'true' if policy.BOOL_DEFAULTS[key] else 'false'
        values = ('true', 'false')
    else:
        values = choice_values(key)
        default = policy.CHOICE_KEYS[key][0]
    unset = pgettext_lazy("policy setting", "Not set (default: %s)")
    return [('', unset % default)] + [(v, v) for v in values]


def field_of(key: str) -> str | None:
    """The form field of a metadata key (``sparc:exclude_paths.2`` is
    ``exclude_paths``); None for a key the form has no field for.
    """
    prefix = policy.PREFIXES[policy.INSTANCE]
    name = key[len(prefix):] if key.startswith(prefix) else key
    base = name.split('.', 1)[0]
    return base if base in policy.KEYS else None


def list_items(text: str) -> list[str]:
    """The items of a list field: lines, each comma-separated with the
    metadata syntax (``\\,`` is a comma inside an item). Blank lines are
    ignored; an empty item between commas is kept so that the policy
    reports it.
    """
    items = []
    for line in text.splitlines():
        if line.strip():
            items.extend(policy.split_list(line))
    return items


def list_text(part: policy.PolicyPart | None, pairs: dict[str, str],
              key: str) -> str:
    """What a list field shows: the items of a valid part one per line,
    or the stored values as they are when the part is invalid.
    """
    if part is not None:
        return '\n'.join(policy.join_list([i]) for i in getattr(part, key))
    prefix = policy.PREFIXES[policy.INSTANCE] + key
    keys = [k for k in pairs if k == prefix or k.startswith(prefix + '.')]
    keys.sort(key=lambda k: int(k.rpartition('.')[2])
              if k != prefix and k.rpartition('.')[2].isdigit() else 0)
    return '\n'.join(pairs[k] for k in keys)


class EditPolicy(forms.SelfHandlingForm):
    """The instance's part of the policy (its ``sparc:`` metadata).

    What the flavor and the image enforce is not part of the form: the
    view shows it read-only and nothing posted can change it.
    """

    exclude_processes = forms.CharField(
        label=LABELS[policy.EXCLUDE_PROCESSES], required=False,
        strip=False, help_text=LIST_HELP[policy.EXCLUDE_PROCESSES],
        widget=forms.Textarea(attrs={'rows': 3}))
    exclude_paths = forms.CharField(
        label=LABELS[policy.EXCLUDE_PATHS], required=False, strip=False,
        help_text=LIST_HELP[policy.EXCLUDE_PATHS],
        widget=forms.Textarea(attrs={'rows': 3}))
    # Plain text fields with a select widget: an unexpected value reaches
    # the policy check and gets its message.
    follow_ipc = forms.CharField(
        label=LABELS[policy.FOLLOW_IPC], required=False,
        help_text=CHOICE_HELP[policy.FOLLOW_IPC],
        widget=forms.Select(choices=_choices(policy.FOLLOW_IPC)))
    scrub_free_memory = forms.CharField(
        label=LABELS[policy.SCRUB_FREE_MEMORY], required=False,
        help_text=CHOICE_HELP[policy.SCRUB_FREE_MEMORY],
        widget=forms.Select(choices=_choices(policy.SCRUB_FREE_MEMORY)))
    on_failure = forms.CharField(
        label=LABELS[policy.ON_FAILURE], required=False,
        help_text=CHOICE_HELP[policy.ON_FAILURE],
        widget=forms.Select(choices=_choices(policy.ON_FAILURE)))
    suspend = forms.CharField(
        label=LABELS[policy.SUSPEND], required=False,
        help_text=CHOICE_HELP[policy.SUSPEND],
        widget=forms.Select(choices=_choices(policy.SUSPEND)))

    def __init__(self, request, *args, **kwargs):
        self.instance: instance_privacy.InstancePrivacy = kwargs.pop(
            'instance')
        super().__init__(request, *args, **kwargs)

    @classmethod
    def initial_for(cls, instance: instance_privacy.InstancePrivacy
                    ) -> dict[str, str]:
        """The form's values for the instance's current metadata."""
        pairs = instance.sources.get(policy.INSTANCE) or {}
        part = instance.part(policy.INSTANCE)
        initial = {key: list_text(part, pairs, key) for key in LIST_FIELDS}
        prefix = policy.PREFIXES[policy.INSTANCE]
        for key in CHOICE_FIELDS:
            initial[key] = pairs.get(prefix + key, '')
        return initial

    def metadata(self, data) -> dict[str, str]:
        """The ``sparc:`` metadata the submitted values stand for."""
        pairs = {}
        for key in LIST_FIELDS:
            pairs.update(policy.list_pairs(key, list_items(data.get(key)
                                                           or '')))
        prefix = policy.PREFIXES[policy.INSTANCE]
        for key in CHOICE_FIELDS:
            value = data.get(key) or ''
            if value.strip():
                pairs[prefix + key] = value
        return pairs

    def clean(self):
        data = super().clean()
        pairs = self.metadata(data)
        try:
            policy.parse(pairs, policy.INSTANCE)
        except exception.InvalidPolicy as e:
            for problem in e.problems:
                field = field_of(problem.key)
                self.add_error(field if field in self.fields else None,
                               str(problem))
        data['metadata'] = pairs
        return data

    def handle(self, request, data):
        pairs = data['metadata']
        stale = sorted(set(self.instance.instance_keys) - set(pairs))
        try:
            # Set before deleting: in between, the policy only ever holds
            # more than either the old or the new one.
            if pairs:
                horizon_api.nova.server_metadata_update(
                    request, self.instance.id, pairs)
            if stale:
                horizon_api.nova.server_metadata_delete(
                    request, self.instance.id, stale)
        except Exception:
            exceptions.handle(request, _('Unable to update the privacy '
                                         'policy of "%s".')
                              % self.instance.name)
            return False
        messages.success(request, _('Privacy policy of "%s" saved.')
                         % self.instance.name)
        self._warn_refusals(request, pairs)
        return True

    def _warn_refusals(self, request, pairs) -> None:
        """Say which settings the merge will not grant (e.g.
        ``on_failure=allow`` where the operator does not permit it), in
        the words of ``sparc policy check``.
        """
        sources = dict(self.instance.sources)
        sources[policy.INSTANCE] = pairs
        updated = instance_privacy.InstancePrivacy(
            id=self.instance.id, name=self.instance.name,
            status=self.instance.status, task_state=self.instance.task_state,
            tenant_id=self.instance.tenant_id, sources=sources,
            on_failure_allow_from=self.instance.on_failure_allow_from)
        if updated.effective is None:
            return
        for refusal in updated.effective.refused:
            messages.warning(request, _('Refused: %s') % refusal)


class CreatePrivateSnapshot(forms.SelfHandlingForm):
    """A snapshot of an instance with a privacy policy (Nova's
    createImage; the compute driver scrubs it before Glance stores it).
    """

    name = forms.CharField(max_length=255, label=_("Snapshot Name"))

    def __init__(self, request, *args, **kwargs):
        self.instance: instance_privacy.InstancePrivacy = kwargs.pop(
            'instance')
        super().__init__(request, *args, **kwargs)

    def handle(self, request, data):
        try:
            image_id = horizon_api.nova.snapshot_create(
                request, self.instance.id, data['name'])
        except Exception:
            exceptions.handle(request, _('Unable to create a snapshot of '
                                         '"%s".') % self.instance.name)
            return False
        messages.success(request, _(
            'Snapshot "%(name)s" of "%(instance)s" requested. It is '
            'scrubbed before Glance stores it; the Last Scrub column shows '
            'the result.') % {'name': data['name'],
                              'instance': self.instance.name})
        return image_id or True
