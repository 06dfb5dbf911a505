"""Errors of the memory engine. Each names the checkpoint and the reason;
none carries guest memory contents (an unexpected crash of the sandbox
child is reported by its exception type only). Process names quoted in a
reason are escaped where the message is shown
(:func:`sparc_nova.printable.printable`).
"""

from sparc_nova import exception

__all__ = ['ScrubError', 'SelectorError']


class ScrubError(exception.CheckpointError):
    """A scrub (or its verification) failed; nothing was written."""


class SelectorError(exception.SparcError):
    """A process selector does not parse, or selects what must not be
    selected.
    """
