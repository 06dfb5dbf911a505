"""Errors raised by sparc-nova.

Every error that concerns a file names the file and, where it applies, the
byte offset at which the problem was found. Messages never contain guest
memory or file contents, nor the names of the guest files a policy hides
(tool output quoted into a disk error is redacted first, see
:mod:`sparc_nova.engine.disk.redact`). They may quote other strings of
the guest (a process name, a machine type, a volume label): whatever
shows or logs a message escapes it with
:func:`sparc_nova.printable.printable`.
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


class DiskError(SparcError):
    """A disk image could not be scrubbed or verified.

    ``path`` is the image file on the host; ``device`` (optional) is the
    device or file inside the image, as the appliance names it
    (``/dev/sda2``, ``/dev/vg0/root``, ``/home/a/.ssh``), and ``reason``
    says why in words that never quote file contents.
    """

    def __init__(self, path: str, reason: str, device: str | None = None):
        self.path = path
        self.device = device
        self.reason = reason
        where = path if device is None else '%s: %s' % (path, device)
        super().__init__('%s: %s' % (where, reason))


class DiskImageError(DiskError):
    """The input or output of a scrub is unusable (not an image, truncated,
    no filesystem, unwritable destination). Raised before the appliance
    starts; nothing has been written.
    """


class DiskScrubError(DiskError):
    """A step of the scrub failed (a volume could not be opened, mounted,
    cleaned or checked). No destination image is left behind.
    """


class DiskVerificationError(DiskError):
    """The scrubbed image failed self-verification (a canary of a removed
    file is still readable, a rule still matches, or a kept file changed).
    The destination image has been deleted.
    """


class InvalidPolicy(SparcError):
    """A privacy policy has invalid keys or values.

    ``problems`` lists every one of them; each names the key, the value,
    the source (flavor extra spec, image property, instance metadata) and
    what is allowed.
    """

    def __init__(self, problems: list):
        self.problems = list(problems)
        super().__init__('invalid privacy policy: %s'
                         % '; '.join(str(p) for p in self.problems))
