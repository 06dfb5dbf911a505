"""The Privacy panel in a real browser against the test cloud.

A member logs in, opens Project > Compute > Privacy, sets a policy on a
running instance (after a validation error), sees it in the table and in
Nova's metadata, creates a private snapshot and sees the scrub result
land (and the image Glance serves holds none of the removed file's
bytes); Project > Compute > Images shows the scrub column. A suspend the
policy refuses shows with its reason in the row, as the member reads it
from Nova's action log. Screenshots go to artifacts/horizon/, and the
text of every page screenshotted has its counts agree with their nouns
(``1 path``, ``2 rules``). The
read-only table also works with JavaScript disabled, and no page logs a
console error.
"""

import os
import re
import time

import pytest

from sparc_nova.cmd import policy as cmd_policy
from sparc_nova.dashboard.tests.browser import conftest
from sparc_nova.dashboard.tests import grammar
from sparc_nova.dashboard.tests import helpers

#: Browser tests need the test cloud: they are end-to-end tests too
#: (``-m "not e2e"`` deselects them, as it does the cloud stage).
pytestmark = [pytest.mark.browser, pytest.mark.e2e]

#: How long a snapshot (copy, scrub in the appliance, upload) may take.
SNAPSHOT_TIMEOUT_MS = 15 * 60 * 1000
#: How long a page may take: the test cloud's Nova API needs several
#: seconds per request on a loaded two-core machine.
PAGE_TIMEOUT_MS = 3 * 60 * 1000
#: How long a refused request may take to land in Nova's action log.
ACTION_TIMEOUT_S = 5 * 60
#: The microversion from which a project member sees the events of an
#: instance action (never their tracebacks).
EVENTS_MICROVERSION = '2.51'
INVALID_PROCESS = 'usr/bin/gpg'
POLICY_PROCESSES = 'gpg-agent'
POLICY_PATHS = '/srv/secret/**'


def shot(page, name):
    """Screenshot the page into the artifacts, and check its text: every
    count agrees with its noun (:mod:`..grammar`).
    """
    path = os.path.join(conftest.ARTIFACTS, name)
    page.screenshot(path=path, full_page=True)
    wrong = grammar.count_disagreements(page.inner_text('body'))
    assert wrong == [], '%s: counts that disagree with their noun: %s' % (
        name, wrong)
    return path


def login(page, horizon, user, password, next_url='/project/privacy/'):
    page.goto(horizon + '/auth/login/?next=' + next_url)
    page.fill('#id_username', user)
    page.fill('#id_password', password)
    page.click('button[type=submit], input[type=submit]')
    page.wait_for_url(re.compile(re.escape(horizon + next_url)))


def row_selector(server_id):
    return '#privacy__row__%s' % server_id


def item(row, value):
    """The list item of a policy value in a row of the Privacy table."""
    return row.locator('li', has=row.page.locator(
        'code', has_text=re.compile('^%s$' % re.escape(value))))


def open_row_action(page, server_id, action):
    """Click a row action of the Privacy table: the first one is a button,
    the others are in the row's drop-down.
    """
    link = page.locator('#privacy__row_%s__action_%s' % (server_id, action))
    if not link.is_visible():
        page.locator(row_selector(server_id) +
                     ' .btn-group .dropdown-toggle').click()
    link.click()


def new_context(browser, **kwargs):
    context = browser.new_context(viewport={'width': 1600, 'height': 1000},
                                  **kwargs)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    return context


def test_member_sets_a_policy_and_takes_a_private_snapshot(
        browser, console, horizon, tenant, server, admin, tmp_path):
    context = new_context(browser)
    page = context.new_page()
    console.attach(page, 'member')
    login(page, horizon, tenant.username, tenant.password)

    # The panel: the instance with what the operator and image enforce.
    row = page.locator(row_selector(server.id))
    row.wait_for()
    assert 'privacy-vm' in row.inner_text()
    assert item(row, 'keepassxc').locator(
        '.sparc-origin-flavor .fa-lock').count() == 1
    assert item(row, '/home/*/.ssh/**').locator(
        '.sparc-origin-image .fa-lock').count() == 1
    shot(page, 'privacy-panel.png')

    # Edit with an invalid process selector: the policy module's message,
    # the one `sparc policy check` prints.
    open_row_action(page, server.id, 'edit_policy')
    form = page.locator('#edit_privacy_policy_form')
    form.wait_for()
    enforced = page.locator('.sparc-enforced-flavor')
    assert 'keepassxc' in enforced.inner_text()
    rc, expected = helpers.sparc_policy_check(
        {'sparc:exclude_processes': INVALID_PROCESS})
    assert rc == cmd_policy.EXIT_INVALID
    form.locator('#id_exclude_processes').fill(INVALID_PROCESS)
    form.locator('input[type=submit]').click()
    page.locator('#edit_privacy_policy_form').get_by_text(
        expected[0]).wait_for()
    shot(page, 'privacy-form-error.png')

    # A valid policy.
    form = page.locator('#edit_privacy_policy_form')
    form.locator('#id_exclude_processes').fill(POLICY_PROCESSES)
    form.locator('#id_exclude_paths').fill(POLICY_PATHS)
    form.locator('input[type=submit]').click()
    page.locator('.alert-success').wait_for()
    row = page.locator(row_selector(server.id))
    row.wait_for()
    assert POLICY_PROCESSES in row.inner_text()
    assert POLICY_PATHS in row.inner_text()
    for value in (POLICY_PROCESSES, POLICY_PATHS):
        assert item(row, value).locator('.sparc-origin-instance').count() == 1

    # ... and in Nova's metadata.
    metadata = tenant.conn.compute.get_server_metadata(server).metadata
    assert metadata['sparc:exclude_processes'] == POLICY_PROCESSES
    assert metadata['sparc:exclude_paths'] == POLICY_PATHS

    # A private snapshot; the row refreshes itself until the result lands.
    open_row_action(page, server.id, 'private_snapshot')
    form = page.locator('#create_private_snapshot_form')
    form.wait_for()
    form.locator('#id_name').fill('privacy-vm-private')
    form.locator('input[type=submit]').click()
    page.locator('.alert-success').wait_for()
    # From here on the page is not reloaded: Horizon's row updates bring
    # the result.
    page.locator(row_selector(server.id) + ' td.warning',
                 has_text='In progress').wait_for()
    scrub_cell = page.locator(row_selector(server.id) + ' td.status_up, ' +
                              row_selector(server.id) + ' td.status_down')
    scrub_cell.first.wait_for(timeout=SNAPSHOT_TIMEOUT_MS)
    row = page.locator(row_selector(server.id))
    text = row.inner_text()
    snapshots = conftest.snapshots_of(tenant.conn, server)
    assert len(snapshots) == 1, text
    snap = snapshots[0]
    assert snap.properties.get('sparc_scrubbed') == 'true', snap.properties
    # What Glance serves: none of the removed file's bytes, the kept
    # file's bytes still there.
    disk = conftest.raw_image(tenant.conn, snap, str(tmp_path))
    assert disk.count(conftest.SECRET_TEXT.encode()) == 0
    assert disk.count(conftest.KEPT_TEXT.encode()) >= 1
    assert 'Scrubbed' in text
    summary = snap.properties['sparc_scrub_summary']
    assert summary.splitlines()[0] in text
    shot(page, 'privacy-scrub-result.png')
    assert console.errors('member') == []

    # Project > Compute > Images: the scrub column (AngularJS panel), and
    # the report summary in the image's detail view.
    page.goto(horizon + '/project/images/')
    badge = page.locator('.sparc-scrubbed')
    badge.first.wait_for()
    assert badge.count() == 1
    assert badge.first.get_attribute('title').startswith(
        summary.splitlines()[0])
    shot(page, 'images-privacy-column.png')
    page.goto(horizon + '/project/images/%s/' % snap.id)
    page.get_by_text(summary.splitlines()[0]).first.wait_for()
    shot(page, 'image-detail-scrub-summary.png')
    context.close()
    assert conftest.unexpected(console.errors('member')) == []


def refused_action(conn, server, name: str) -> dict:
    """The newest ``name`` action of ``server`` once Nova marked it
    failed and the compute driver's ``sparc-nova:`` event is in it, as
    the project member reads it (``openstack --os-compute-api-version
    2.51 server event show``).
    """
    base = '/servers/%s/os-instance-actions' % server.id
    deadline = time.monotonic() + ACTION_TIMEOUT_S
    while True:
        actions = conn.compute.get(
            base, microversion=EVENTS_MICROVERSION).json()['instanceActions']
        found = sorted((a for a in actions if a['action'] == name),
                       key=lambda a: a['start_time'])
        if found and found[-1]['message'] == 'Error':
            action = conn.compute.get(
                '%s/%s' % (base, found[-1]['request_id']),
                microversion=EVENTS_MICROVERSION).json()['instanceAction']
            if any(e['event'].startswith('sparc-nova: ')
                   for e in action.get('events') or ()):
                return action
        assert time.monotonic() < deadline, (name, found)
        time.sleep(2)


def test_refused_suspend_shows_why(browser, console, horizon, tenant,
                                   server):
    # The member asks for what the operator may also enforce: no suspend
    # (the flavor's keepassxc means there is something to exclude).
    conn = tenant.conn
    conn.compute.set_server_metadata(server, **{'sparc:suspend': 'refuse'})
    try:
        conn.compute.suspend_server(server)
        action = refused_action(conn, server, 'suspend')
        reason = ('Suspend of instance %s is refused by its privacy '
                  'policy: sparc:suspend=refuse' % server.id)
        names = [e['event'] for e in action['events']]
        assert 'sparc-nova: ' + reason in names, names
        # No traceback for a member.
        assert all(not e.get('traceback') for e in action['events'])
        deadline = time.monotonic() + ACTION_TIMEOUT_S
        while True:
            current = conn.compute.get_server(server)
            if current.task_state is None:
                break
            assert time.monotonic() < deadline, current.task_state
            time.sleep(2)
        assert current.status == 'ACTIVE'

        context = new_context(browser)
        page = context.new_page()
        console.attach(page, 'refused')
        login(page, horizon, tenant.username, tenant.password)
        refused = page.locator(row_selector(server.id) +
                               ' .sparc-refused-suspend')
        refused.wait_for()
        text = refused.inner_text()
        assert 'Suspend failed' in text
        assert reason in text
        assert action['request_id'] in text
        shot(page, 'privacy-refused-suspend.png')
        context.close()
        assert conftest.unexpected(console.errors('refused')) == []
    finally:
        conn.compute.delete_server_metadata(server, ['sparc:suspend'])


def test_read_only_table_without_javascript(browser, console, horizon,
                                            tenant, server):
    context = new_context(browser, java_script_enabled=False)
    page = context.new_page()
    console.attach(page, 'no-javascript')
    login(page, horizon, tenant.username, tenant.password)
    # Framing stays forbidden by the header.
    response = page.goto(horizon + '/project/privacy/')
    assert response.headers['x-frame-options'] in ('DENY', 'SAMEORIGIN')
    row = page.locator(row_selector(server.id))
    assert 'privacy-vm' in row.inner_text()
    assert 'keepassxc' in row.inner_text()
    assert '/home/*/.ssh/**' in row.inner_text()
    shot(page, 'privacy-panel-no-javascript.png')
    context.close()
    assert console.errors('no-javascript') == []


def test_other_project_cannot_see_or_edit_the_policy(
        browser, console, horizon, tenant, other_tenant, server):
    before = tenant.conn.compute.get_server_metadata(server).metadata
    context = new_context(browser)
    page = context.new_page()
    console.attach(page, 'other-project')
    login(page, horizon, other_tenant.username, other_tenant.password)
    assert page.locator(row_selector(server.id)).count() == 0
    # Straight to the form of the other project's instance: Nova does not
    # show it, Horizon sends the user back with an error.
    page.goto(horizon + '/project/privacy/%s/edit/' % server.id)
    assert page.url.rstrip('/').endswith('/project/privacy')
    assert page.locator('.alert-danger').count() == 1
    context.close()
    after = tenant.conn.compute.get_server_metadata(server).metadata
    assert after == before
    assert console.errors('other-project') == []
