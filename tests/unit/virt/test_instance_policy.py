"""Reading an instance's policy from Nova's objects."""

import pytest

from sparc_nova import conf
from sparc_nova.virt import exception as virt_exception
from sparc_nova.virt import instance_policy
from tests.unit.virt import fakes


def test_three_sources():
    inst = fakes.instance(
        metadata={'sparc:exclude_processes': 'keepassxc', 'other': 'x'},
        extra_specs={'sparc:exclude_processes': 'gpg-agent',
                     'hw:cpu_policy': 'dedicated'},
        image_properties={'sparc_exclude_paths': '/etc/ssl/private/**',
                          'sparc_scrubbed': 'true'})
    found = instance_policy.sources(inst)
    assert found == {
        'flavor': {'sparc:exclude_processes': 'gpg-agent',
                   'hw:cpu_policy': 'dedicated'},
        'image': {'sparc_exclude_paths': '/etc/ssl/private/**',
                  'sparc_scrubbed': 'true'},
        'instance': {'sparc:exclude_processes': 'keepassxc', 'other': 'x'}}
    effective = instance_policy.load(inst)
    assert effective.exclude_processes == ['gpg-agent', 'keepassxc']
    assert effective.exclude_paths == ['/etc/ssl/private/**']
    assert effective.origins['exclude_paths'] == {
        '/etc/ssl/private/**': ['image']}


def test_no_policy():
    inst = fakes.instance()
    assert not instance_policy.load(inst).excludes_anything
    assert not instance_policy.has_scrub_records(inst)


def test_scrub_records_are_seen_but_are_not_policy():
    inst = fakes.instance(image_properties={'sparc_scrubbed': 'true',
                                            'sparc_policy_digest': 'x'})
    assert instance_policy.has_scrub_records(inst)
    assert not instance_policy.load(inst).excludes_anything


def test_invalid_policy_is_a_nova_exception_naming_the_problem():
    inst = fakes.instance(metadata={'sparc:follow_ipc': 'maybe'})
    with pytest.raises(virt_exception.SparcPolicyInvalid) as e:
        instance_policy.load(inst)
    assert e.value.format_message() == (
        'Invalid privacy policy for instance %s: sparc:follow_ipc=\'maybe\' '
        '(instance metadata): expected true or false' % fakes.INSTANCE_UUID)


def test_on_failure_allow_from_configuration():
    inst = fakes.instance(metadata={'sparc:on_failure': 'allow',
                                    'sparc:exclude_processes': 'x'})
    assert instance_policy.load(inst).on_failure == 'abort'
    conf.CONF.set_override('on_failure_allow_from', ['instance'],
                           group='sparc')
    try:
        assert instance_policy.load(inst).on_failure == 'allow'
    finally:
        conf.CONF.clear_override('on_failure_allow_from', group='sparc')
