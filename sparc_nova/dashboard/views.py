"""Views of the Privacy panel."""

from django.urls import reverse
from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from horizon import exceptions
from horizon import forms
from horizon import tables
from horizon.utils import memoized
from horizon import views

from openstack_dashboard import policy as horizon_policy

from sparc_nova.dashboard import api
from sparc_nova.dashboard import forms as privacy_forms
from sparc_nova.dashboard import rows
from sparc_nova.dashboard import tables as privacy_tables
from sparc_nova import policy

INDEX_URL = "horizon:project:privacy:index"


class IndexView(tables.DataTableView):
    table_class = privacy_tables.PrivacyTable
    template_name = 'project/privacy/index.html'
    page_title = _("Privacy")

    def has_more_data(self, table):
        return self._more

    def get_data(self):
        self._more = False
        marker = self.request.GET.get(
            privacy_tables.PrivacyTable._meta.pagination_param)
        try:
            data, self._more = rows.load_page(self.request, marker=marker)
        except Exception:
            exceptions.handle(self.request,
                              _('Unable to retrieve instances.'))
            return []
        return data


class InstanceMixin(object):
    """Loads the instance named in the URL and refuses users the policy
    rules do not allow on it (Nova itself answers 404 for instances of
    other projects).
    """

    #: The rules the user must pass for this instance.
    policy_rules = ()
    #: Whether the view shows the instance's snapshots and requests.
    history = False

    @memoized.memoized_method
    def get_instance(self):
        instance_id = self.kwargs['instance_id']
        try:
            instance = rows.load_one(self.request, instance_id,
                                     history=self.history)
        except Exception:
            exceptions.handle(self.request,
                              _('Unable to retrieve instance "%s".')
                              % instance_id,
                              redirect=reverse(INDEX_URL))
        target = {'project_id': instance.tenant_id}
        if not horizon_policy.check(self.policy_rules, self.request, target):
            raise exceptions.NotAuthorized
        return instance


class EditView(InstanceMixin, forms.ModalFormView):
    form_class = privacy_forms.EditPolicy
    form_id = "edit_privacy_policy_form"
    modal_id = "edit_privacy_policy_modal"
    modal_header = _("Edit Privacy Policy")
    submit_label = _("Save")
    submit_url = "horizon:project:privacy:edit"
    template_name = 'project/privacy/edit.html'
    success_url = reverse_lazy(INDEX_URL)
    page_title = _("Edit Privacy Policy")
    policy_rules = privacy_tables.EDIT_RULES

    def get_form_kwargs(self):
        kwargs = super().get_form_kwargs()
        kwargs['instance'] = self.get_instance()
        return kwargs

    def get_initial(self):
        return privacy_forms.EditPolicy.initial_for(self.get_instance())

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        instance = self.get_instance()
        context['instance'] = instance
        context['enforced'] = enforced_parts(instance)
        context['instance_problems'] = instance.problems_of(policy.INSTANCE)
        context['unreadable'] = [privacy_tables.SOURCE_UNREADABLE[s]
                                 for s in instance.incomplete]
        context['submit_url'] = reverse(self.submit_url, args=[instance.id])
        return context


def enforced_parts(instance) -> list[dict]:
    """What the flavor and the image set, for read-only display: one entry
    per source that sets anything (or is invalid).
    """
    parts = []
    for source in privacy_tables.LOCKED_SOURCES:
        pairs = instance.sources.get(source)
        if not pairs:
            continue
        part = instance.part(source)
        entry = {'source': source,
                 'label': privacy_tables.SOURCE_LABELS[source],
                 'title': privacy_tables.SOURCE_TITLES[source],
                 'problems': [str(p) for p in instance.problems_of(source)],
                 'lists': [], 'settings': []}
        if part is not None:
            for key in policy.LIST_KEYS:
                if getattr(part, key):
                    entry['lists'].append(
                        (privacy_forms.LABELS[key], getattr(part, key)))
            for key, value in part.settings.items():
                if isinstance(value, bool):
                    value = 'true' if value else 'false'
                entry['settings'].append((privacy_forms.LABELS[key], value))
        parts.append(entry)
    return parts


def effective_rows(instance) -> list[tuple[str, str]]:
    """The effective policy as (label, HTML) pairs, the cells of the
    Privacy table.
    """
    result = [(_("Policy"), privacy_tables.policy_cell(instance))]
    for key in policy.LIST_KEYS:
        result.append((privacy_forms.LABELS[key],
                       privacy_tables.list_cell(key)(instance)))
    for key in privacy_forms.CHOICE_FIELDS:
        result.append((privacy_forms.LABELS[key],
                       privacy_tables.setting_cell(key)(instance)))
    return result


#: What the detail view says of a suspended instance: sealed (True), not
#: sealed (False), unknown (None).
SUSPEND_STATES = {
    True: ('sealed', pgettext_lazy("suspend state", "Sealed"),
           privacy_tables.SEALED_TITLE),
    False: ('not-sealed', pgettext_lazy("suspend state", "Not sealed"),
            _("Its suspend did not seal: excluded processes, if any, were "
              "scrubbed from the saved state and are gone after resume.")),
    None: ('unknown', pgettext_lazy("suspend state", "Unknown"),
           _("Whether its suspend sealed the excluded processes could not "
             "be read from the instance's action log.")),
}


def suspend_state(instance) -> dict | None:
    """For a suspended instance: whether it is sealed, as ``state`` (a
    CSS class suffix), ``label`` and ``text``; None otherwise.
    """
    if not instance.suspended:
        return None
    state, label, text = SUSPEND_STATES[instance.sealed]
    return {'state': state, 'label': label, 'text': text}


class SnapshotView(InstanceMixin, forms.ModalFormView):
    form_class = privacy_forms.CreatePrivateSnapshot
    form_id = "create_private_snapshot_form"
    modal_id = "create_private_snapshot_modal"
    modal_header = _("Create Private Snapshot")
    submit_label = _("Create Snapshot")
    submit_url = "horizon:project:privacy:snapshot"
    template_name = 'project/privacy/snapshot.html'
    success_url = reverse_lazy(INDEX_URL)
    page_title = _("Create Private Snapshot")
    policy_rules = privacy_tables.SNAPSHOT_RULES

    def get_form_kwargs(self):
        kwargs = super().get_form_kwargs()
        instance = self.get_instance()
        if not instance.excludes_anything:
            msg = (_('The privacy policy of "%s" is invalid: fix it first.')
                   if not instance.valid else
                   _('"%s" has no privacy policy: a snapshot would not be '
                     'scrubbed. Edit its privacy policy first.'))
            raise exceptions.Http302(reverse(INDEX_URL),
                                     message=msg % instance.name)
        kwargs['instance'] = instance
        return kwargs

    def get_initial(self):
        return {'name': '%s-private' % self.get_instance().name}

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        instance = self.get_instance()
        context['instance'] = instance
        context['submit_url'] = reverse(self.submit_url, args=[instance.id])
        return context


class DetailView(InstanceMixin, views.HorizonTemplateView):
    template_name = 'project/privacy/detail.html'
    page_title = _("Privacy of {{ instance.name }}")
    policy_rules = (("compute", "os_compute_api:servers:show"),)
    history = True

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        instance = self.get_instance()
        context['instance'] = instance
        context['effective'] = effective_rows(instance)
        context['enforced'] = enforced_parts(instance)
        context['suspend_state'] = suspend_state(instance)
        context['refused'] = [
            (privacy_tables.ACTION_LABELS.get(r.action, r.action), r)
            for r in instance.refused_requests]
        try:
            context['snapshots'] = api.snapshots(self.request, instance.id)
        except Exception:
            context['snapshots'] = []
            exceptions.handle(self.request, _('Unable to retrieve the '
                                              'snapshots of the instance.'))
        context['url'] = reverse(INDEX_URL)
        return context
