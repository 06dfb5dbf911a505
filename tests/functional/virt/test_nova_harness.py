"""Nova's own functional harness, in both of Nova's concurrency modes.

The suite in tests/nova_functional must run in a process of its own (Nova
monkey patches the interpreter in eventlet mode, and forbids eventlet in
native threading mode), so each mode is a child pytest run.
"""

import os
import subprocess
import sys

import pytest

from tools import test_summary

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
SUITE = os.path.join('tests', 'nova_functional')

#: Every test of the suite (junit ``classname.name``): each one must run
#: and pass in both modes. A test added to the suite is added here.
EXPECTED = frozenset('tests.nova_functional.' + name for name in (
    'test_api_checks.ApiChecksTest.'
    'test_crash_dump_with_memory_policy_is_refused',
    'test_api_checks.ApiChecksTest.'
    'test_crash_dump_without_memory_policy_reaches_nova',
    'test_api_checks.ApiChecksTest.test_flavor_extra_spec_invalid_is_400',
    'test_api_checks.ApiChecksTest.'
    'test_metadata_set_invalid_is_400_and_nothing_changes',
    'test_api_checks.ApiChecksTest.'
    'test_other_project_server_is_404_not_checked',
    'test_api_checks.ApiChecksTest.test_server_create_invalid_metadata_is_400',
    'test_api_checks.ApiChecksTest.'
    'test_snapshot_does_not_inherit_scrub_records',
    'test_api_checks.ApiChecksTest.'
    'test_volume_backed_snapshot_with_disk_policy_is_refused',
    'test_api_checks.ApiChecksTest.'
    'test_volume_backed_snapshot_without_disk_policy_reaches_nova',
    'test_fail_closed.CrashDumpTest.test_crash_dump_refused_with_a_policy',
    'test_fail_closed.CrashDumpTest.test_crash_dump_without_policy',
    'test_fail_closed.InterruptedSuspendTest.'
    'test_record_cleared_after_a_failed_scrub',
    'test_fail_closed.InterruptedSuspendTest.'
    'test_record_exists_during_the_scrub_only',
    'test_fail_closed.InterruptedSuspendTest.'
    'test_start_deletes_a_managed_save_whose_scrub_was_cut_short',
    'test_fail_closed.InterruptedSuspendTest.'
    'test_start_without_records_changes_nothing',
    'test_fail_closed.MemberSeesWhyTest.'
    'test_failed_snapshot_named_in_the_create_image_events',
    'test_fail_closed.MemberSeesWhyTest.'
    'test_invalid_policy_named_in_the_suspend_events',
    'test_fail_closed.ShelveFailureTest.'
    'test_failed_scrub_leaves_no_image_and_the_server_as_it_was',
    'test_fail_closed.ShelveFailureTest.test_failed_scrub_of_a_stopped_server',
    'test_fail_closed.ShelveFailureTest.test_invalid_policy_leaves_no_image',
    'test_fail_closed.UnsupportedNovaTest.'
    'test_compute_refuses_to_start_on_an_unknown_nova',
    'test_fail_closed.UnsupportedNovaTest.'
    'test_compute_refuses_to_start_when_an_internal_moved',
    'test_fail_closed.UploadCheckTest.'
    'test_glance_holding_other_bytes_fails_the_snapshot',
    'test_fail_closed.UploadCheckTest.'
    'test_snapshot_uploaded_past_the_scrub_is_deleted',
    'test_harness_database.WriterTransactionTest.'
    'test_writer_that_read_first_commits_past_another_writer',
    'test_moves.MoveBetweenSparcHostsTest.test_cold_migration',
    'test_moves.MoveBetweenSparcHostsTest.test_every_host_reports_the_trait',
    'test_moves.MoveBetweenSparcHostsTest.test_live_migration_over_tls',
    'test_moves.MoveBetweenSparcHostsTest.'
    'test_live_migration_without_policy_needs_no_tls',
    'test_moves.MoveBetweenSparcHostsTest.'
    'test_live_migration_without_tls_refused',
    'test_moves.MoveBetweenSparcHostsTest.test_refused_by_configuration',
    'test_moves.MoveToPlainLibvirtHostTest.test_cold_migration_refused',
    'test_moves.MoveToPlainLibvirtHostTest.test_live_migration_refused',
    'test_moves.MoveToPlainLibvirtHostTest.test_live_migration_without_policy',
    'test_moves.MoveToPlainLibvirtHostTest.test_plain_host_has_no_trait',
    'test_moves.SameHostResizeTest.'
    'test_resize_that_drops_the_operators_spec_refused',
    'test_moves.SameHostResizeTest.test_resize_that_keeps_the_operators_spec',
    'test_sealed_suspend.SealedSuspendTest.'
    'test_delete_deletes_the_secret_and_the_sealed_pages',
    'test_sealed_suspend.SealedSuspendTest.'
    'test_fallback_kill_resumes_without_the_excluded_processes',
    'test_sealed_suspend.SealedSuspendTest.'
    'test_hard_reboot_drops_the_sealed_state',
    'test_sealed_suspend.SealedSuspendTest.'
    'test_key_manager_down_keeps_the_server_suspended',
    'test_sealed_suspend.SealedSuspendTest.'
    'test_key_manager_down_refuses_the_suspend',
    'test_sealed_suspend.SealedSuspendTest.'
    'test_key_missing_keeps_the_server_suspended',
    'test_sealed_suspend.SealedSuspendTest.'
    'test_operator_scrub_overrides_a_tenants_seal',
    'test_sealed_suspend.SealedSuspendTest.'
    'test_seal_failure_rolls_back_and_deletes_the_secret',
    'test_sealed_suspend.SealedSuspendTest.test_sealed_suspend_then_resume',
    'test_sealed_suspend.SealedSuspendTest.'
    'test_shelve_uploads_the_scrubbed_disk_and_drops_the_seal',
    'test_sealed_suspend.SealedSuspendTest.'
    'test_tampered_sealed_pages_are_refused_and_nothing_changes',
    'test_sealed_suspend.SealedSuspendTest.'
    'test_wrong_key_is_refused_and_nothing_changes',
    'test_snapshot.RealDiskEngineSnapshotTest.'
    'test_create_image_uploads_an_image_without_the_files',
    'test_snapshot.SnapshotTest.test_backup',
    'test_snapshot.SnapshotTest.test_create_image_cold_of_running_server',
    'test_snapshot.SnapshotTest.test_create_image_cold_of_stopped_server',
    'test_snapshot.SnapshotTest.test_create_image_live',
    'test_snapshot.SnapshotTest.test_direct_snapshot_kept_without_policy',
    'test_snapshot.SnapshotTest.test_direct_snapshot_turned_off_for_policy',
    'test_snapshot.SnapshotTest.test_engine_does_not_stall_the_service',
    'test_snapshot.SnapshotTest.test_engine_failure_allowed_by_operator',
    'test_snapshot.SnapshotTest.test_engine_failure_nothing_reaches_glance',
    'test_snapshot.SnapshotTest.test_invalid_policy_refuses_the_snapshot',
    'test_snapshot.SnapshotTest.test_no_policy_engine_not_called',
    'test_snapshot.SnapshotTest.'
    'test_records_of_an_earlier_scrub_are_not_inherited',
    'test_snapshot.SnapshotTest.test_shelve',
    'test_suspend.SuspendTest.test_invalid_policy_refuses_the_suspend',
    'test_suspend.SuspendTest.test_scrub_failure_allowed_by_operator',
    'test_suspend.SuspendTest.test_scrub_failure_rolls_the_suspend_back',
    'test_suspend.SuspendTest.test_suspend_refused_by_policy',
    'test_suspend.SuspendTest.'
    'test_suspend_scrubs_the_managed_save_and_resume_works',
    'test_suspend.SuspendTest.test_suspend_without_policy',
    'test_suspend.SuspendTest.test_tenant_cannot_allow_failures',
    'test_suspend.SuspendTest.'
    'test_the_scrub_follows_the_save_while_libvirt_writes_it',
    'test_suspend.SuspendTest.test_failed_save_stops_the_follower',
))


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['eventlet', 'threading'])
def test_nova_functional_suite(mode, tmp_path):
    env = dict(os.environ, SPARC_NOVA_FUNCTIONAL='1')
    env.pop('OS_NOVA_DISABLE_EVENTLET_PATCHING', None)
    if mode == 'threading':
        env['OS_NOVA_DISABLE_EVENTLET_PATCHING'] = 'true'
    junit = tmp_path / 'junit.xml'
    proc = subprocess.run(
        [sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider', '-q',
         '-p', 'no:warnings', '--junitxml', str(junit), SUITE],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout else ''
    assert proc.returncode == 0, (
        'Nova functional suite (%s mode) failed: %s\n%s\n%s'
        % (mode, summary, proc.stdout[-20000:], proc.stderr[-5000:]))
    outcomes = {case.name.replace('::', '.'): case.outcome
                for case in test_summary.read_junit(str(junit))}
    assert set(outcomes) == EXPECTED, (
        'missing: %s; unexpected: %s' % (sorted(EXPECTED - set(outcomes)),
                                         sorted(set(outcomes) - EXPECTED)))
    not_passed = {k: v for k, v in outcomes.items() if v != 'passed'}
    assert not_passed == {}, '%s\n%s' % (summary, not_passed)
