"""Errors of the memory engine. Each names the checkpoint and the reason;
none carries guest memory contents.
"""

from sparc_nova import exception


class ScrubError(exception.CheckpointError):
    """A scrub (or its verification) failed; nothing was written."""


class SelectorError(exception.SparcError):
    """A process selector does not parse, or selects what must not be
    selected.
    """
