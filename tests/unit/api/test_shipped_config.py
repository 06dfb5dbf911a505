"""The configuration files sparc-nova ships for Nova's API and Glance."""

import configparser
import json
import os
import re

from sparc_nova import policy

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
PROTECTIONS = os.path.join(REPO, 'etc', 'glance',
                           'property-protections-sparc-nova.conf')
NOVA_SNIPPET = os.path.join(REPO, 'etc', 'nova', 'sparc-nova-api.conf')
METADEFS = os.path.join(REPO, 'etc', 'glance', 'metadefs')


def protection_rule(name: str) -> dict[str, str]:
    """The rule Glance applies to property ``name``: the first section
    whose regular expression is found in it (glance.common.property_utils).
    """
    ini = configparser.RawConfigParser()
    ini.read(PROTECTIONS)
    for section in ini.sections():
        if re.search(section, name):
            return dict(ini[section])
    raise AssertionError('no rule for %s' % name)


def test_records_are_written_by_admin_and_service_only():
    for name in policy.RECORD_PROPERTIES + ('sparc_scrub_anything',):
        rule = protection_rule(name)
        for action in ('create', 'update', 'delete'):
            assert rule[action] == 'admin,service', (name, action)
        assert rule['read'] == '@'


def test_every_other_property_stays_open():
    for name in ('sparc_exclude_paths', 'sparc_scrubbed_x',
                 'xsparc_scrubbed', 'hw_disk_bus', 'os_distro',
                 'sparc_policy_digest2'):
        rule = protection_rule(name)
        assert set(rule.values()) == {'@'}, name


def test_snapshots_do_not_inherit_records_and_nova_defaults_kept():
    ini = configparser.RawConfigParser()
    ini.read(NOVA_SNIPPET)
    names = ini.get('DEFAULT', 'non_inheritable_image_properties').split(',')
    assert set(policy.RECORD_PROPERTIES) <= set(names)
    assert {'cache_in_nova', 'bittorrent'} <= set(names)


def test_metadefs_namespace_offers_every_policy_key():
    files = os.listdir(METADEFS)
    assert files == ['sparc-nova-privacy-policy.json']
    with open(os.path.join(METADEFS, files[0])) as f:
        namespace = json.load(f)
    assert set(namespace['properties']) == set(policy.KEYS)
    prefixes = {a['name']: a['prefix']
                for a in namespace['resource_type_associations']}
    assert prefixes == {'OS::Glance::Image': policy.PREFIXES[policy.IMAGE],
                        'OS::Nova::Flavor': policy.PREFIXES[policy.FLAVOR],
                        'OS::Nova::Server': policy.PREFIXES[policy.INSTANCE]}
    props = namespace['properties']
    for key, choices in policy.CHOICE_KEYS.items():
        assert props[key]['enum'] == list(choices)
        assert props[key]['default'] == choices[0]
    for key in policy.BOOL_KEYS:
        assert props[key]['type'] == 'boolean'
        assert props[key]['default'] is policy.BOOL_DEFAULTS[key]
