"""The keys of sealed suspends in the key manager (castellan's in-memory
key manager, with Barbican's project ownership)."""

import types
from unittest import mock

from castellan.common.objects import symmetric_key
from oslo_config import cfg
import pytest

from sparc_nova.virt import exception as virt_exception
from sparc_nova.virt import seal_keys
from tests import fake_key_manager
from tests.unit.virt import fakes


def context(project='project-a'):
    return types.SimpleNamespace(project_id=project, user_id='user-1')


@pytest.fixture
def manager():
    return fake_key_manager.ProjectKeyManager()


@pytest.fixture
def keys(manager):
    return seal_keys.SealKeys(cfg.ConfigOpts(), manager=manager)


def test_create_stores_a_fresh_aes_256_key_of_the_project(keys, manager):
    instance = fakes.instance()
    ref, key = keys.create(context(), instance)
    assert len(key) == 32
    stored = manager.keys[ref]
    assert isinstance(stored, symmetric_key.SymmetricKey)
    assert (stored.algorithm, stored.bit_length) == ('AES', 256)
    assert stored.get_encoded() == key
    assert stored.name == ('sparc-nova sealed suspend of server %s '
                           '(instance-00000001)' % fakes.INSTANCE_UUID)
    assert manager.owners[ref] == 'project-a'
    # A fresh key each time.
    ref2, key2 = keys.create(context(), instance)
    assert ref2 != ref and key2 != key


def test_fetch_and_delete_with_the_projects_context(keys, manager):
    instance = fakes.instance()
    ref, key = keys.create(context(), instance)
    assert keys.fetch(context(), instance, ref) == key
    assert keys.delete(context(), instance, ref) is True
    assert ref not in manager.keys
    assert keys.delete(context(), instance, ref) is False


def test_missing_secret(keys):
    with pytest.raises(virt_exception.SparcSealKeyError) as e:
        keys.fetch(context(), fakes.instance(), 'c0ffee')
    assert e.value.format_message() == (
        'The sealing key of instance %s could not be fetched in the key '
        'manager: secret c0ffee does not exist (it was deleted?)'
        % fakes.INSTANCE_UUID)


def test_other_project_is_forbidden(keys):
    instance = fakes.instance()
    ref, key = keys.create(context(), instance)
    with pytest.raises(virt_exception.SparcSealKeyError) as e:
        keys.fetch(context('project-b'), instance, ref)
    message = e.value.format_message()
    assert message.endswith('the key manager refused access to secret %s '
                            '(forbidden)' % ref)
    assert key.hex() not in message and repr(key) not in message


def test_unreachable_key_manager(keys, manager):
    instance = fakes.instance()
    ref, key = keys.create(context(), instance)
    manager.unreachable = True
    for call in (lambda: keys.fetch(context(), instance, ref),
                 lambda: keys.delete(context(), instance, ref),
                 lambda: keys.create(context(), instance)):
        with pytest.raises(virt_exception.SparcSealKeyError,
                           match='the key manager failed or is '
                                 'unreachable .*Unable to establish '
                                 'connection'):
            call()
    # Best effort: logged, not raised.
    keys.delete_quietly(context(), instance, ref)


def test_unexpected_errors_are_named_by_type_only(keys, manager):
    instance = fakes.instance()
    with mock.patch.object(manager, 'get',
                           side_effect=RuntimeError('secret bytes 0xdead')):
        with pytest.raises(virt_exception.SparcSealKeyError) as e:
            keys.fetch(context(), instance, 'ref')
    assert 'unexpected RuntimeError' in e.value.format_message()
    assert '0xdead' not in e.value.format_message()


def test_a_secret_that_is_not_a_256_bit_key_is_refused(keys, manager):
    instance = fakes.instance()
    ref = manager.store(context(), symmetric_key.SymmetricKey(
        'AES', 128, bytes(16)))
    with pytest.raises(virt_exception.SparcSealKeyError,
                       match='does not hold a 256-bit key'):
        keys.fetch(context(), instance, ref)


def test_the_key_manager_is_built_from_the_configuration():
    conf = cfg.ConfigOpts()
    manager = fake_key_manager.ProjectKeyManager()
    with mock.patch.object(seal_keys.key_manager, 'API',
                           return_value=manager) as api:
        keys = seal_keys.SealKeys(conf)
        api.assert_not_called()
        ref, _ = keys.create(context(), fakes.instance())
        keys.fetch(context(), fakes.instance(), ref)
    api.assert_called_once_with(conf)
