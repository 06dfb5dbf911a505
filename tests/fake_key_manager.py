"""A castellan key manager for tests: castellan's own in-memory
``MockKeyManager``, with Barbican's ownership rule (a secret is its
creator's project's: another project gets ``Forbidden``) and a switch
that makes it unreachable.
"""

from castellan.common import exception as castellan_exception
from castellan.tests.unit.key_manager import mock_key_manager

__all__ = ['ProjectKeyManager']


class ProjectKeyManager(mock_key_manager.MockKeyManager):
    """In-memory secrets owned by the project of the context that stored
    them.

    :ivar owners: secret reference -> project id.
    :ivar unreachable: when set, every call fails as a key manager that
        cannot be reached does (``KeyManagerError``).
    """

    def __init__(self, configuration=None):
        super().__init__(configuration)
        self.owners: dict[str, str] = {}
        self.unreachable = False

    def _check(self, context, ref=None):
        if self.unreachable:
            raise castellan_exception.KeyManagerError(
                reason='Unable to establish connection to '
                       'http://barbican:9311/v1/secrets')
        if context is None:
            raise castellan_exception.Forbidden()
        if ref is not None and ref in self.owners and \
                self.owners[ref] != context.project_id:
            raise castellan_exception.Forbidden()

    def store(self, context, managed_object, expiration=None):
        self._check(context)
        ref = super().store(context, managed_object, expiration)
        self.owners[ref] = context.project_id
        return ref

    def get(self, context, managed_object_id, metadata_only=False):
        self._check(context, managed_object_id)
        return super().get(context, managed_object_id, metadata_only)

    def delete(self, context, managed_object_id, force=False):
        self._check(context, managed_object_id)
        super().delete(context, managed_object_id)
        self.owners.pop(managed_object_id, None)
