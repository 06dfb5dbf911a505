"""The keys of sealed suspends, in the key manager (castellan).

A suspend with ``sparc:suspend=seal`` encrypts what a scrub would zero
under a key (:mod:`sparc_nova.checkpoint.sealed`: 32 bytes that wrap the
seal's own data key). That key is a secret in the key manager Nova
already uses for encrypted volumes and ephemeral storage: castellan's
``key_manager.API(conf)``, configured by nova.conf's ``[key_manager]``
(``backend = barbican``) and ``[barbican]`` sections. The host keeps only
its reference.

* :meth:`SealKeys.create` makes a fresh key (``os.urandom``, 32 bytes),
  stores it as a castellan ``SymmetricKey`` (AES, 256 bits) named after
  the instance, with the **suspend request's** context: the secret
  belongs to the server's project, and the request's user created it.
* :meth:`SealKeys.fetch` reads it back with the **resume request's**
  context: only someone the key manager lets read the project's secrets
  can resume the server with its excluded processes.
* :meth:`SealKeys.delete` deletes it once the checkpoint is unsealed (or
  gone).

Every error of the key manager (not found, forbidden, unreachable, a
secret that is not such a key) becomes :class:`SparcSealKeyError`, whose
message says what happened and names the secret's reference, never key
material.
"""

import os

from castellan.common import exception as castellan_exception
from castellan.common.objects import symmetric_key
from castellan import key_manager
from oslo_config import cfg
from oslo_log import log as logging

from sparc_nova import printable
from sparc_nova.virt import exception as virt_exception

__all__ = ['KEY_ALGORITHM', 'KEY_BITS', 'KEY_BYTES', 'SealKeys',
           'key_name']

LOG = logging.getLogger(__name__)

KEY_ALGORITHM = 'AES'
KEY_BITS = 256
KEY_BYTES = KEY_BITS // 8
#: Longest error text of the key manager quoted in a message.
MAX_REASON = 300


def key_name(instance) -> str:
    """The name of the secret that holds ``instance``'s sealing key."""
    return 'sparc-nova sealed suspend of server %s (%s)' % (
        instance.uuid, instance.name)


def _reason(ref: str | None, error: Exception) -> str:
    """What the key manager's ``error`` means, in words; the error's own
    text is quoted (escaped, bounded) only for unexpected failures.
    """
    where = 'secret %s' % ref if ref else 'a new secret'
    if isinstance(error, castellan_exception.ManagedObjectNotFoundError):
        return '%s does not exist (it was deleted?)' % where
    if isinstance(error, castellan_exception.Forbidden):
        return 'the key manager refused access to %s (forbidden)' % where
    if isinstance(error, castellan_exception.KeyManagerError):
        return 'the key manager failed or is unreachable (%s): %s' % (
            where, printable.printable(error, limit=MAX_REASON))
    return 'the key manager could not be used (%s): unexpected %s' % (
        where, type(error).__name__)


class SealKeys:
    """Create, fetch and delete the sealing keys of instances.

    :param conf: the configuration to build castellan's key manager from
        (nova-compute's: its ``[key_manager]`` and ``[barbican]``
        sections); read the first time a key is needed.
    :param manager: a castellan ``KeyManager`` to use instead (tests).
    """

    def __init__(self, conf: cfg.ConfigOpts, manager=None):
        self._conf = conf
        self._manager = manager

    def _key_manager(self):
        if self._manager is None:
            self._manager = key_manager.API(self._conf)
        return self._manager

    def _error(self, instance, action: str, ref: str | None,
               error: Exception) -> virt_exception.SparcSealKeyError:
        LOG.debug('Key manager error', exc_info=error)
        return virt_exception.SparcSealKeyError(
            instance_uuid=instance.uuid, action=action,
            reason=_reason(ref, error))

    def create(self, context, instance) -> tuple[str, bytes]:
        """Store a fresh key for ``instance`` with the suspend request's
        ``context``.

        :returns: ``(reference, key)``: the secret's reference and the
            32 key bytes.
        :raises SparcSealKeyError: the key manager did not store it.
        """
        key = os.urandom(KEY_BYTES)
        managed = symmetric_key.SymmetricKey(KEY_ALGORITHM, KEY_BITS, key,
                                             name=key_name(instance))
        try:
            ref = self._key_manager().store(context, managed)
        except Exception as e:
            raise self._error(instance, 'stored', None, e) from None
        LOG.info('Sealing key stored as secret %s', ref, instance=instance)
        return str(ref), key

    def fetch(self, context, instance, ref: str) -> bytes:
        """The key of secret ``ref``, read with the resume request's
        ``context``.

        :raises SparcSealKeyError: it cannot be read, or it is not a
            256-bit key.
        """
        try:
            managed = self._key_manager().get(context, ref)
            key = managed.get_encoded()
        except Exception as e:
            raise self._error(instance, 'fetched', ref, e) from None
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise virt_exception.SparcSealKeyError(
                instance_uuid=instance.uuid, action='fetched',
                reason='secret %s does not hold a %d-bit key' % (
                    ref, KEY_BITS))
        return key

    def delete(self, context, instance, ref: str) -> bool:
        """Delete secret ``ref``; whether it existed.

        :raises SparcSealKeyError: the key manager did not delete it.
        """
        try:
            self._key_manager().delete(context, ref)
        except castellan_exception.ManagedObjectNotFoundError:
            return False
        except Exception as e:
            raise self._error(instance, 'deleted', ref, e) from None
        LOG.info('Sealing key secret %s deleted', ref, instance=instance)
        return True

    def delete_quietly(self, context, instance, ref: str) -> None:
        """:meth:`delete`, logging instead of raising (best effort: a
        secret left behind opens nothing once its sealed pages are gone).
        """
        try:
            self.delete(context, instance, ref)
        except virt_exception.SparcSealKeyError as e:
            LOG.warning('%s; delete it by hand', e.format_message(),
                        instance=instance)
