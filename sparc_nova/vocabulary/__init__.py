"""The shared vocabulary of process selectors, guest path rules and
presets.

One grammar, used by the policy (validation and merging), the memory
engine (which processes and which files' page cache it scrubs) and the
disk engine (which files it removes):

* :mod:`.selectors`: ``NAME``, ``exe:GLOB``, ``pid:N``, ``uid:N``,
  ``cgroup:PATH``;
* :mod:`.paths`: guest path globs, ``!`` negations, ``preset:NAME`` and
  ``scope:LABEL`` items, and how a list of them decides a path;
* :mod:`.presets`: the named sets of globs.

It sits below the policy and the engines and imports neither. Every
parser raises :class:`InvalidRule`, whose message is what the policy
shows for the item (``sparc policy check`` prints it as is).
"""

from sparc_nova.vocabulary.errors import InvalidRule

__all__ = ['InvalidRule']
