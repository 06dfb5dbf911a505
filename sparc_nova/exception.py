"""Errors raised by sparc-nova.

Every error that concerns a file names the file and, where it applies, the
byte offset at which the problem was found. Messages never contain guest
memory or file contents.
"""


class SparcError(Exception):
    """Base class of every error sparc-nova raises on purpose."""


class CheckpointError(SparcError):
    """A checkpoint could not be read, understood or rewritten."""

    def __init__(self, path: str, message: str, offset: int | None = None):
        self.path = path
        self.offset = offset
        self.reason = message
        where = path if offset is None else '%s: at offset %d' % (path,
                                                                  offset)
        super().__init__('%s: %s' % (where, message))


class CheckpointFormatError(CheckpointError):
    """The checkpoint's bytes do not follow the format (corrupt, truncated,
    hostile).
    """


class UnsupportedCheckpoint(CheckpointError):
    """A well-formed checkpoint uses a feature sparc-nova does not handle
    (a future header version, XBZRLE pages, an unknown machine type...).
    """


class LimitExceeded(CheckpointFormatError):
    """The checkpoint claims more than a configured limit allows."""
