"""The one error of the shared vocabulary."""

from sparc_nova import exception

__all__ = ['InvalidRule']


class InvalidRule(exception.SparcError, ValueError):
    """A selector, path rule or preset name is not valid. The message
    says what is wrong in the words the policy shows a user; it is a
    ValueError too, as the disk engine's rules have always raised.
    """
