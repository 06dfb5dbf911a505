"""The Privacy table: one row per instance of the project."""

from django.urls import reverse
from django.utils.html import format_html
from django.utils.html import format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy
from django.utils.translation import pgettext_lazy

from horizon import exceptions
from horizon import tables

from openstack_dashboard import api as horizon_api
from openstack_dashboard import policy as horizon_policy

from sparc_nova.dashboard import instance_privacy
from sparc_nova.dashboard import rows
from sparc_nova import policy

#: Policy rules of the actions (Horizon's compute policy file).
EDIT_RULES = (("compute", "os_compute_api:server-metadata:create"),
              ("compute", "os_compute_api:server-metadata:update"),
              ("compute", "os_compute_api:server-metadata:delete"))
CLEAR_RULES = (("compute", "os_compute_api:server-metadata:delete"),)
SNAPSHOT_RULES = (("compute", "os_compute_api:servers:create_image"),)

#: Instance states in which Nova takes a snapshot.
SNAPSHOT_READY_STATES = ('ACTIVE', 'SHUTOFF', 'PAUSED', 'SUSPENDED')

SOURCE_LABELS = {
    policy.FLAVOR: pgettext_lazy("policy source", "operator"),
    policy.IMAGE: pgettext_lazy("policy source", "image"),
    policy.INSTANCE: pgettext_lazy("policy source", "instance"),
    'default': pgettext_lazy("policy source", "default"),
}
SOURCE_TITLES = {
    policy.FLAVOR: _("Enforced by the operator (flavor extra specs); "
                     "it cannot be removed here."),
    policy.IMAGE: _("Required by the image the instance was booted from "
                    "(image properties); it cannot be removed here."),
    policy.INSTANCE: _("Set on the instance (instance metadata); it can "
                       "be edited here."),
    'default': _("No source sets it: the default applies."),
}
SOURCE_UNREADABLE = {
    policy.FLAVOR: _("The flavor's extra specs are not visible to you: the "
                     "operator may enforce more."),
    policy.IMAGE: _("The image's properties could not be read: the image "
                    "may require more."),
    policy.INSTANCE: _("The instance metadata could not be read."),
}
#: Sources a tenant cannot change from the instance.
LOCKED_SOURCES = (policy.FLAVOR, policy.IMAGE)

NO_SNAPSHOT = 'none'
SCRUB_STATUS_CHOICES = (
    (instance_privacy.SCRUB_PENDING, None),
    (instance_privacy.SCRUB_DONE, True),
    (instance_privacy.SCRUB_NO_RECORD, True),
    (NO_SNAPSHOT, True),
    (instance_privacy.SCRUB_UNSCRUBBED, False),
    (instance_privacy.SCRUB_FAILED, False),
)
SCRUB_DISPLAY_CHOICES = (
    (instance_privacy.SCRUB_PENDING, pgettext_lazy("scrub state",
                                                   "In progress")),
    (instance_privacy.SCRUB_DONE, pgettext_lazy("scrub state", "Scrubbed")),
    (instance_privacy.SCRUB_NO_RECORD, pgettext_lazy("scrub state",
                                                     "Not recorded")),
    (NO_SNAPSHOT, pgettext_lazy("scrub state", "No snapshot")),
    (instance_privacy.SCRUB_UNSCRUBBED, pgettext_lazy("scrub state",
                                                      "Not scrubbed")),
    (instance_privacy.SCRUB_FAILED, pgettext_lazy("scrub state", "Failed")),
)


#: How the Last Refused Operations column names each policed Nova action.
ACTION_LABELS = {
    'createImage': pgettext_lazy("refused action", "Snapshot"),
    'createBackup': pgettext_lazy("refused action", "Backup"),
    'shelve': pgettext_lazy("refused action", "Shelve"),
    'suspend': pgettext_lazy("refused action", "Suspend"),
    'trigger_crash_dump': pgettext_lazy("refused action", "Crash dump"),
    'live-migration': pgettext_lazy("refused action", "Live migration"),
    'migrate': pgettext_lazy("refused action", "Migration"),
    'resize': pgettext_lazy("refused action", "Resize"),
}


# -- cells -------------------------------------------------------------------


def origin_badges(sources) -> str:
    """Labels naming where a setting comes from; locked ones show a lock."""
    return format_html_join(
        ' ', '<span class="label {} sparc-origin sparc-origin-{}" '
             'title="{}">{}{}</span>',
        (('label-warning' if s in LOCKED_SOURCES else 'label-default', s,
          SOURCE_TITLES.get(s, s),
          format_html('<span class="fa fa-lock" aria-hidden="true"></span> ')
          if s in LOCKED_SOURCES else '',
          SOURCE_LABELS.get(s, s)) for s in sources))


def list_cell(key: str):
    """A cell with the items of a list key and their sources."""
    def cell(row: instance_privacy.InstancePrivacy):
        if not row.valid:
            return pgettext_lazy("policy value", "(invalid)")
        items = row.effective.origins[key]
        if not items:
            return pgettext_lazy("policy value", "None")
        return format_html(
            '<ul class="list-unstyled sparc-items">{}</ul>',
            format_html_join('', '<li><code>{}</code> {}</li>',
                             ((item, origin_badges(sources))
                              for item, sources in items.items())))
    cell.__name__ = 'list_cell_%s' % key
    return cell


def setting_cell(key: str):
    """A cell with the value of a setting and its sources."""
    def cell(row: instance_privacy.InstancePrivacy):
        if not row.valid:
            return pgettext_lazy("policy value", "(invalid)")
        value = row.effective.effective()[key]
        if isinstance(value, bool):
            value = 'true' if value else 'false'
        return format_html('<code>{}</code> {}', value,
                           origin_badges(row.effective.origins[key]))
    cell.__name__ = 'setting_cell_%s' % key
    return cell


def suspend_cell(row: instance_privacy.InstancePrivacy):
    """The suspend setting; a suspended instance whose suspend sealed its
    excluded processes says "Sealed".
    """
    setting = setting_cell(policy.SUSPEND)(row)
    if row.sealed:
        return format_html('{} {}', setting, sealed_badge())
    return setting


def sealed_badge() -> str:
    return format_html(
        '<span class="label label-info sparc-sealed" title="{}">{}</span>',
        SEALED_TITLE, pgettext_lazy("suspend state", "Sealed"))


#: What "Sealed" means for a suspended instance.
SEALED_TITLE = _("The excluded processes' memory is encrypted in the saved "
                 "state with a key kept in the project's key manager; they "
                 "continue after resume.")


def policy_cell(row: instance_privacy.InstancePrivacy):
    """Whether the instance has a policy, and every problem of it."""
    notes = [SOURCE_UNREADABLE[s] for s in row.incomplete]
    if not row.valid:
        return format_html(
            '<span class="text-danger sparc-invalid">{}</span>'
            '<ul class="sparc-problems">{}</ul>{}',
            _("Invalid: checkpoints fail"),
            format_html_join('', '<li>{}</li>',
                             ((str(p),) for p in row.problems)),
            format_html_join('', '<p class="help-block">{}</p>',
                             ((n,) for n in notes)))
    if row.effective.excludes_anything:
        text = format_html('<span class="sparc-enforced" title="{}">{}</span>',
                           row.effective.digest, _("Enforced"))
    else:
        text = format_html('<span class="sparc-none">{}</span>',
                           _("None: checkpoints are not scrubbed"))
    refusals = format_html_join(
        '', '<p class="text-warning sparc-refused">{}: {}</p>',
        ((_("Refused"), str(r)) for r in row.effective.refused))
    return format_html('{}{}{}', text, refusals,
                       format_html_join('', '<p class="help-block">{}</p>',
                                        ((n,) for n in notes)))


def scrub_state(row: instance_privacy.InstancePrivacy) -> str:
    if row.snapshot_in_progress:
        return instance_privacy.SCRUB_PENDING
    if row.last_request_failed:
        return instance_privacy.SCRUB_FAILED
    if row.last_snapshot is None:
        return NO_SNAPSHOT
    return row.last_snapshot.state


def snapshot_cell(row: instance_privacy.InstancePrivacy):
    """The latest snapshot: its name and the scrub report summary; or
    the failed request that left no snapshot.
    """
    if row.last_request_failed and not row.snapshot_in_progress:
        reason = row.last_request.reason
        return format_html(
            '<div class="sparc-request-failed">{}</div>{}',
            _('The last snapshot request (%(action)s at %(time)s, '
              '%(request)s) failed and no image was kept. The instance\'s '
              'action log has the request.') % {
                  'action': row.last_request.action,
                  'time': row.last_request.start_time,
                  'request': row.last_request.request_id},
            format_html('<div class="sparc-request-reason">{}: {}</div>',
                        _('Why'), reason) if reason else '')
    snap = row.last_snapshot
    if snap is None:
        return '-'
    return format_html(
        '<a href="{}">{}</a>'
        '<div class="sparc-summary" style="white-space: pre-line">{}</div>',
        reverse('horizon:project:images:images:detail', args=[snap.image_id]),
        snap.name or snap.image_id, snap.summary or '')


def refused_cell(row: instance_privacy.InstancePrivacy):
    """The newest request of each policed action that the privacy policy
    made fail, with the compute driver's reason (tenant-influenced text:
    escaped), its time and request id; newest first.
    """
    refused = row.refused_requests
    if not refused:
        return '-'
    return format_html(
        '<ul class="list-unstyled sparc-refused-requests">{}</ul>',
        format_html_join(
            '', '<li class="sparc-refused-request sparc-refused-{}">'
                '<strong>{}</strong>: '
                '<span class="sparc-request-reason">{}</span>'
                '<br><small class="text-muted">{} UTC, {}</small></li>',
            ((r.action,
              _('%(action)s failed') % {
                  'action': ACTION_LABELS.get(r.action, r.action)},
              r.reason, r.started.strftime('%Y-%m-%d %H:%M:%S'),
              r.request_id) for r in refused)))


# -- actions -----------------------------------------------------------------


class EditPolicy(horizon_policy.PolicyTargetMixin, tables.LinkAction):
    name = "edit_policy"
    verbose_name = _("Edit Privacy Policy")
    url = "horizon:project:privacy:edit"
    classes = ("ajax-modal",)
    icon = "pencil"
    policy_rules = EDIT_RULES


class CreatePrivateSnapshot(horizon_policy.PolicyTargetMixin,
                            tables.LinkAction):
    name = "private_snapshot"
    verbose_name = _("Create Private Snapshot")
    url = "horizon:project:privacy:snapshot"
    classes = ("ajax-modal",)
    icon = "camera"
    policy_rules = SNAPSHOT_RULES

    def allowed(self, request, row=None):
        if row is None:
            return True
        return (row.excludes_anything and
                row.status in SNAPSHOT_READY_STATES and
                not row.snapshot_in_progress)


class ClearPolicy(horizon_policy.PolicyTargetMixin, tables.DeleteAction):
    """Removes the tenant's part of the policy (the instance's ``sparc:``
    metadata); what the flavor and the image enforce stays.
    """

    name = "clear_policy"
    policy_rules = CLEAR_RULES
    help_text = _("The instance's own privacy settings are removed. What "
                  "the operator and the image enforce stays.")

    @staticmethod
    def action_present(count):
        return ngettext_lazy("Clear Policy", "Clear Policies", count)

    @staticmethod
    def action_past(count):
        return ngettext_lazy("Cleared Policy", "Cleared Policies", count)

    def allowed(self, request, row=None):
        return row is None or bool(row.instance_keys)

    def delete(self, request, obj_id):
        # Read the instance again: the row may be stale, and the keys to
        # delete are whatever Nova holds now. Nova answers 404 for an
        # instance the user may not see.
        row = rows.load_one(request, obj_id)
        target = self.get_policy_target(request, row)
        if not horizon_policy.check(self.policy_rules, request, target):
            raise exceptions.NotAuthorized
        if row.instance_keys:
            horizon_api.nova.server_metadata_delete(request, row.id,
                                                    row.instance_keys)


class PrivacyFilterAction(tables.FilterAction):
    filter_type = "query"

    def filter(self, table, data, filter_string):
        q = filter_string.lower()
        return [row for row in data if q in row.name.lower()]


class UpdateRow(tables.Row):
    """Rows refresh themselves while a snapshot is being scrubbed."""

    ajax = True

    def get_data(self, request, instance_id):
        return rows.load_one(request, instance_id)


class PrivacyTable(tables.DataTable):
    name = tables.WrappingColumn(
        "name", verbose_name=_("Instance"),
        link="horizon:project:privacy:detail")
    policy_state = tables.Column(policy_cell, verbose_name=_("Policy"))
    exclude_processes = tables.Column(
        list_cell(policy.EXCLUDE_PROCESSES),
        verbose_name=_("Excluded Processes"))
    exclude_paths = tables.Column(
        list_cell(policy.EXCLUDE_PATHS), verbose_name=_("Excluded Paths"))
    follow_ipc = tables.Column(setting_cell(policy.FOLLOW_IPC),
                               verbose_name=_("Follow IPC"))
    scrub_free_memory = tables.Column(setting_cell(policy.SCRUB_FREE_MEMORY),
                                      verbose_name=_("Scrub Free Memory"))
    on_failure = tables.Column(setting_cell(policy.ON_FAILURE),
                               verbose_name=_("On Failure"))
    suspend = tables.Column(suspend_cell, verbose_name=_("Suspend"))
    scrub = tables.Column(scrub_state, verbose_name=_("Last Scrub"),
                          status=True, status_choices=SCRUB_STATUS_CHOICES,
                          display_choices=SCRUB_DISPLAY_CHOICES)
    last_snapshot = tables.Column(snapshot_cell,
                                  verbose_name=_("Last Snapshot"))
    last_refused = tables.Column(
        refused_cell, verbose_name=_("Last Refused Operations"))

    class Meta(object):
        name = "privacy"
        verbose_name = _("Privacy")
        status_columns = ["scrub"]
        row_class = UpdateRow
        table_actions = (PrivacyFilterAction, ClearPolicy)
        row_actions = (EditPolicy, CreatePrivateSnapshot, ClearPolicy)
