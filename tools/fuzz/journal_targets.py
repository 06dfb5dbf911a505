"""Fuzz target for the in-place journal reader.

A journal is replayed by root into the checkpoint it names, so its reader
must refuse anything malformed with a clear error and never patch outside
the file. The target takes the journal's body (everything before its
MAC): the target identity in the header is overwritten with the fixed
:data:`TARGET`, so that mutations get past the identity check, the MAC is
computed with :data:`KEY`, and the result goes through the whole reader
(:func:`journal.decode`: size bound, MAC, header, groups, bounds) and is
then applied to an in-memory copy of a :data:`TARGET`-sized file. The
untouched input is also decoded as it is (its MAC must then be refused).

Oracle: the reader returns groups that :func:`journal.apply_to` applies
without an error, or raises a :class:`~sparc_nova.exception.SparcError`.
Anything else (IndexError, struct.error, ValueError, a numpy error) is a
bug. Used by ``tools/fuzz/run.py journal`` and replayed by
``tests/unit/checkpoint/test_journal_fuzz.py``.
"""

import hashlib
import hmac
import struct

import numpy as np

from sparc_nova.checkpoint import journal
from sparc_nova import exception

__all__ = ['TARGET', 'KEY', 'authenticated', 'read_journal', 'TARGETS']

#: The file every fuzzed journal is for (small: one execution stays fast).
TARGET = journal.Identity(size=64 * 1024, inode=1234, device=56)
KEY = b'\x5a' * journal.KEY_SIZE
_IDENTITY = struct.Struct('<QQQ')
_IDENTITY_AT = 16


def authenticated(body: bytes) -> bytes:
    """``body`` for :data:`TARGET` (when it is long enough to name one),
    with its MAC under :data:`KEY` appended.
    """
    if len(body) >= _IDENTITY_AT + _IDENTITY.size:
        body = (body[:_IDENTITY_AT] +
                _IDENTITY.pack(TARGET.size, TARGET.inode, TARGET.device) +
                body[_IDENTITY_AT + _IDENTITY.size:])
    return body + hmac.new(KEY, body, hashlib.sha256).digest()


def read_journal(data: bytes) -> None:
    """Decode ``data`` as a journal body (see the module docstring) and
    apply what the reader accepts to a copy of the target.
    """
    try:
        journal.decode(data, TARGET, KEY, 'fuzz')
    except exception.SparcError:
        pass
    try:
        groups = journal.decode(authenticated(data), TARGET, KEY, 'fuzz')
    except exception.SparcError:
        return
    journal.apply_to(np.zeros(TARGET.size, dtype=np.uint8), groups)


TARGETS = {'journal': read_journal}
