"""Attacks on the operator's floor through the driver's policy reading
path: what a tenant (instance metadata) or an image owner (image
properties) writes must never narrow what the operator's flavor, or the
image, excludes. Each test reads the policy as the driver does
(:func:`instance_policy.load`), runs the scrubber with the engines
replaced, and asks the rules the engines were handed.
"""

from unittest import mock

import pytest

from sparc_nova import conf
from sparc_nova.engine.disk import rules as disk_rules
from sparc_nova import notifications
from sparc_nova.virt import instance_policy
from sparc_nova.virt import scrubber
from tests.unit.virt import fakes
from tests.unit.virt import test_scrubber

OPERATOR = {'sparc:exclude_paths': '/root/.ssh/**,/etc/secret.key',
            'sparc:exclude_processes': 'vault'}
SECRETS = ['/root/.ssh/id_rsa', '/etc/secret.key']
CANCELLERS = ['!*', '!/*', '!**/*', '!**', '!/root/**', '!/etc/secret.key',
              '!/root/.ssh/id_rsa', '!/etc/*']


@pytest.fixture
def notifier():
    return mock.Mock(spec=notifications.ScrubNotifier, host='compute1')


def _disk_rules_handed(notifier, inst):
    """The rules the disk engine gets for a snapshot of ``inst``."""
    effective = instance_policy.load(inst)
    with mock.patch.object(scrubber.disk, 'scrub_image',
                           autospec=True) as scrub_image:
        scrub_image.return_value = test_scrubber.disk_report_of()
        outcome = scrubber.Scrubber(notifier).snapshot_file(
            'ctx', inst, effective, 'img-1', '/snap/abc', 'qcow2')
    assert outcome.scrubbed
    return scrub_image.call_args[0][2]


def _memory_call(notifier, inst):
    """The arguments the memory engine gets for a suspend of ``inst``."""
    effective = instance_policy.load(inst)
    with mock.patch.object(scrubber.privsep_checkpoint,
                           'scrub_managed_save') as scrub:
        scrub.return_value = {'summary': 'ok', 'report': {}}
        scrubber.Scrubber(notifier).managed_save(
            'ctx', inst, effective, '/var/lib/libvirt/qemu/save/x.save')
    return scrub.call_args[1]


IMAGE_OWNER = {'sparc_exclude_paths': '/root/.ssh/**,/etc/secret.key'}
#: (whose rules, who negates): the flavor's against the tenant and the
#: image owner, the image's against the tenant.
ATTACKS = {
    'tenant-vs-flavor': lambda n: fakes.instance(
        extra_specs=OPERATOR, metadata={'sparc:exclude_paths': n}),
    'image-owner-vs-flavor': lambda n: fakes.instance(
        extra_specs=OPERATOR, image_properties={'sparc_exclude_paths': n}),
    'tenant-vs-image': lambda n: fakes.instance(
        image_properties=IMAGE_OWNER, metadata={'sparc:exclude_paths': n}),
}


@pytest.mark.parametrize('attack', sorted(ATTACKS))
@pytest.mark.parametrize('negation', CANCELLERS)
def test_negation_from_below_cannot_cancel_paths_on_disk(notifier, attack,
                                                         negation):
    rules = _disk_rules_handed(notifier, ATTACKS[attack](negation))
    assert sorted(rules.select(SECRETS).removed) == sorted(SECRETS)


@pytest.mark.parametrize('negation', CANCELLERS)
def test_tenant_negation_cannot_cancel_flavor_page_cache(notifier,
                                                         negation):
    """The memory engine drops the page cache of the policy's paths
    (engine/kernel_copies.py builds its rules from the list it is handed).
    """
    inst = fakes.instance(extra_specs=OPERATOR,
                          metadata={'sparc:exclude_paths': negation})
    call = _memory_call(notifier, inst)
    assert call['selectors'] == ['vault']
    rules = disk_rules.Rules(call['exclude_paths'])
    assert sorted(rules.select(SECRETS).removed) == sorted(SECRETS)


def test_tenant_negation_still_narrows_the_tenants_own_rules(notifier):
    inst = fakes.instance(
        extra_specs=OPERATOR,
        metadata={'sparc:exclude_paths': '/srv/**,!/srv/public/**'})
    rules = _disk_rules_handed(notifier, inst)
    assert sorted(rules.select(SECRETS + ['/srv/a', '/srv/public/b'])
                  .removed) == sorted(SECRETS + ['/srv/a'])


def test_flavor_negation_narrows_the_rules_below_it(notifier):
    inst = fakes.instance(
        extra_specs={'sparc:exclude_paths': '/root/**,!/root/.profile'},
        metadata={'sparc:exclude_paths': '/root/.profile'})
    rules = _disk_rules_handed(notifier, inst)
    assert sorted(rules.select(['/root/.profile', '/root/a']).removed) == [
        '/root/a']


def test_preset_negation_only_narrows_its_preset(notifier):
    """ssh-private-keys keeps ``*.pub``; that must not keep the public
    keys another rule of the same source names.
    """
    inst = fakes.instance(extra_specs={
        'sparc:exclude_paths': 'preset:ssh-private-keys,/root/.ssh/**'})
    rules = _disk_rules_handed(notifier, inst)
    assert sorted(rules.select(['/root/.ssh/id_rsa.pub',
                                '/home/a/.ssh/id_rsa.pub',
                                '/home/a/.ssh/id_rsa']).removed) == [
        '/home/a/.ssh/id_rsa', '/root/.ssh/id_rsa.pub']


@pytest.mark.parametrize('key', ['follow_ipc', 'scrub_free_memory'])
def test_tenant_cannot_relax_a_setting_that_protects_flavor_rules(
        notifier, key):
    inst = fakes.instance(extra_specs=OPERATOR,
                          metadata={'sparc:' + key: 'false'})
    effective = instance_policy.load(inst)
    assert getattr(effective, key) is True
    assert [(r.key, r.source) for r in effective.refused] == [
        (key, 'instance')]
    call = _memory_call(notifier, inst)
    assert call['follow_ipc'] is True and call['scrub_free_memory'] is True


@pytest.mark.parametrize('key', ['follow_ipc', 'scrub_free_memory'])
def test_tenant_cannot_relax_what_the_flavor_set(notifier, key):
    inst = fakes.instance(extra_specs={'sparc:' + key: 'true'},
                          metadata={'sparc:' + key: 'false',
                                    'sparc:exclude_processes': 'gpg'})
    assert getattr(instance_policy.load(inst), key) is True


@pytest.mark.parametrize('key', ['follow_ipc', 'scrub_free_memory'])
def test_tenant_may_relax_a_setting_for_its_own_rules(key):
    inst = fakes.instance(metadata={'sparc:' + key: 'false',
                                    'sparc:exclude_processes': 'gpg'})
    effective = instance_policy.load(inst)
    assert getattr(effective, key) is False and not effective.refused


def test_image_owner_cannot_relax_a_setting_for_flavor_rules():
    inst = fakes.instance(extra_specs=OPERATOR,
                          image_properties={'sparc_follow_ipc': 'false'})
    effective = instance_policy.load(inst)
    assert effective.follow_ipc is True
    assert [(r.key, r.source) for r in effective.refused] == [
        ('follow_ipc', 'image')]


def test_allow_from_below_does_not_cover_flavor_rules():
    """Even where the configuration lets instance metadata choose
    on_failure=allow, that cannot let the flavor's exclusions be
    skipped.
    """
    conf.CONF.set_override('on_failure_allow_from', ['flavor', 'instance'],
                           group='sparc')
    try:
        inst = fakes.instance(extra_specs=OPERATOR,
                              metadata={'sparc:on_failure': 'allow'})
        effective = instance_policy.load(inst)
        assert effective.on_failure == 'abort'
        assert [(r.key, r.source) for r in effective.refused] == [
            ('on_failure', 'instance')]
        own = fakes.instance(metadata={'sparc:on_failure': 'allow',
                                       'sparc:exclude_processes': 'gpg'})
        assert instance_policy.load(own).on_failure == 'allow'
    finally:
        conf.CONF.clear_override('on_failure_allow_from', group='sparc')


def test_tenant_cannot_relax_suspend_refuse():
    inst = fakes.instance(extra_specs={'sparc:suspend': 'refuse'},
                          metadata={'sparc:suspend': 'scrub'})
    effective = instance_policy.load(inst)
    assert effective.suspend == 'refuse'
    assert [(r.key, r.source) for r in effective.refused] == [
        ('suspend', 'instance')]
