"""The policy checks Nova's API runs, in the words of ``sparc policy
check``.

Every module of :mod:`sparc_nova.api` validates through :func:`problems`,
the only caller of the policy parser here.
"""

from typing import Mapping

from sparc_nova import exception
from sparc_nova import policy

__all__ = ['problems', 'message', 'is_policy_key', 'effective']


def problems(pairs: Mapping[str, str], source: str) -> list:
    """The problems of the sparc-nova keys of one source (other keys are
    ignored); an empty list when they are valid.

    :param pairs: every key of the source, e.g. a server's metadata
    :param source: :data:`sparc_nova.policy.FLAVOR`, ``IMAGE`` or
        ``INSTANCE``
    :returns: hashable problems whose ``str()`` is what ``sparc policy
        check`` prints for each
    """
    try:
        policy.parse(pairs, source)
    except exception.InvalidPolicy as e:
        return list(e.problems)
    return []


def message(found: list) -> str:
    """The error ``sparc policy check`` prints for ``found`` problems
    (without its ``sparc: error:`` prefix).
    """
    return str(exception.InvalidPolicy(found))


def is_policy_key(key: str, source: str) -> bool:
    """Whether ``key`` belongs to sparc-nova in ``source`` (records
    sparc-nova writes on images excluded).
    """
    return (key.startswith(policy.PREFIXES[source]) and
            key not in policy.RECORD_PROPERTIES)


def effective(sources: Mapping[str, Mapping[str, str]]
              ) -> policy.EffectivePolicy:
    """The merged policy of a server's three sources (``{source:
    pairs}``), for deciding what the API refuses; ``on_failure`` refusals
    do not matter there, so the configuration is not needed.

    :raises sparc_nova.exception.InvalidPolicy: a source is invalid
    """
    return policy.from_sources(flavor=sources.get(policy.FLAVOR),
                               image=sources.get(policy.IMAGE),
                               instance=sources.get(policy.INSTANCE))
