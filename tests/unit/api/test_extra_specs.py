"""The sparc:* flavor extra spec validators, through Nova's own registry."""

import configparser
import os

from nova.api.validation.extra_specs import validators
from nova import exception as nova_exception
import pytest

from sparc_nova.api import extra_specs
from sparc_nova import policy

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


@pytest.fixture
def registry(monkeypatch):
    """Nova's validator registry with sparc-nova's validators in it, as
    ``load_validators()`` puts them from the entry point.
    """
    monkeypatch.setattr(validators, 'VALIDATORS', dict(validators.VALIDATORS))
    monkeypatch.setattr(validators, 'NAMESPACES', set(validators.NAMESPACES))
    for validator in extra_specs.register():
        validators.VALIDATORS[validator.name] = validator
        validators.NAMESPACES.add(validator.name_regex.split(':', 1)[0])
    return validators


def refused(registry, name, value) -> str:
    with pytest.raises(nova_exception.ValidationError) as e:
        registry.validate(name, value)
    return e.value.format_message()


@pytest.mark.parametrize('name, value', [
    ('sparc:exclude_processes', 'keepassxc,pid:42,exe:/usr/bin/gpg*'),
    ('sparc:exclude_processes.1', 'uid:1000'),
    ('sparc:exclude_paths', '/home/*/.ssh/**,preset:ssh-private-keys'),
    ('sparc:exclude_paths.99', '*.pem'),
    ('sparc:follow_ipc', 'false'),
    ('sparc:scrub_free_memory', 'True'),
    ('sparc:on_failure', 'allow'),
    ('sparc:suspend', 'refuse'),
])
def test_valid_specs_pass(registry, name, value):
    registry.validate(name, value)


@pytest.mark.parametrize('name, value, message', [
    ('sparc:exclude_processes', 'keepassxc,pid:x',
     "invalid privacy policy: sparc:exclude_processes='keepassxc,pid:x' "
     "(flavor extra spec): 'pid:x': pid: takes a decimal number, not 'x'"),
    ('sparc:exclude_processes.2', 'pid:x',
     "invalid privacy policy: sparc:exclude_processes.2='pid:x' (flavor "
     "extra spec): 'pid:x': pid: takes a decimal number, not 'x'"),
    ('sparc:follow_ipc', 'maybe',
     "invalid privacy policy: sparc:follow_ipc='maybe' (flavor extra "
     "spec): expected true or false"),
    ('sparc:on_failure', 'ignore',
     "invalid privacy policy: sparc:on_failure='ignore' (flavor extra "
     "spec): expected one of: abort, allow"),
    ('sparc:exclude_paths', 'preset:no-such-preset', 'no-such-preset'),
    ('sparc:exclude_paths', 'a' * 256, 'longer than 255 characters'),
])
def test_invalid_specs_are_refused_with_policy_check_message(
        registry, name, value, message):
    assert message in refused(registry, name, value)


def test_unknown_sparc_key_is_refused(registry):
    assert 'sparc:exclude_proceses' in refused(
        registry, 'sparc:exclude_proceses', 'x')


@pytest.mark.parametrize('name', ['sparc:exclude_paths.0',
                                  'sparc:exclude_paths.100',
                                  'sparc:follow_ipc.1'])
def test_bad_continuation_numbers_are_refused(registry, name):
    refused(registry, name, '/x')


def test_other_namespaces_untouched(registry):
    registry.validate('hw:cpu_policy', 'dedicated')
    registry.validate('custom-key', 'anything')


def test_one_validator_per_key_and_continuation():
    names = [v.name for v in extra_specs.register()]
    assert names == [
        'sparc:exclude_processes', 'sparc:exclude_processes.{n}',
        'sparc:exclude_paths', 'sparc:exclude_paths.{n}',
        'sparc:follow_ipc', 'sparc:scrub_free_memory', 'sparc:on_failure',
        'sparc:suspend']
    assert all(v.description for v in extra_specs.register())
    assert set(policy.KEYS) == {n[len('sparc:'):] for n in names
                                if '{' not in n}


def test_entry_point_declared():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, 'setup.cfg'))
    lines = cfg['entry_points']['nova.api.extra_spec_validators'].split('\n')
    assert 'sparc = sparc_nova.api.extra_specs' in [
        line.strip() for line in lines]
