"""Validators of the ``sparc:*`` flavor extra specs for Nova's API.

Nova loads them through the ``nova.api.extra_spec_validators`` entry
point (``sparc = sparc_nova.api.extra_specs`` in setup.cfg) and runs them
on ``openstack flavor set --property`` / ``os-extra_specs`` from
microversion 2.86: an invalid value is a 400 whose message is the one
``sparc policy check`` prints for it.

Nova validates each extra spec on its own, so a continuation key
(``sparc:exclude_paths.1``) is checked item by item as its base key is;
whether the numbering has gaps depends on the flavor's other keys and is
checked when the policy is used (the snapshot or suspend fails closed).
An unknown ``sparc:`` key is refused by Nova itself, since sparc-nova
registers the ``sparc`` namespace.
"""

import dataclasses

from nova.api.validation.extra_specs import base
from nova import exception as nova_exception

from sparc_nova.api import validation
from sparc_nova import policy

__all__ = ['SparcExtraSpecValidator', 'register']

_PREFIX = policy.PREFIXES[policy.FLAVOR]

_DESCRIPTIONS = {
    policy.EXCLUDE_PROCESSES:
        'Comma-separated process selectors whose memory is never kept in '
        'a checkpoint: NAME (comm, at most 15 characters), exe:GLOB, '
        'pid:N, uid:N, cgroup:PATH.',
    policy.EXCLUDE_PATHS:
        'Comma-separated guest path globs and preset:NAME items whose '
        'files are removed from every disk snapshot.',
    policy.FOLLOW_IPC:
        'Whether the memory the excluded processes share with others is '
        'scrubbed too.',
    policy.SCRUB_FREE_MEMORY:
        "Whether the guest's free memory is scrubbed on suspend.",
    policy.ON_FAILURE:
        'abort: a checkpoint whose scrub failed is discarded; allow: it is '
        'kept unscrubbed and marked so.',
    policy.SUSPEND:
        'scrub: suspend scrubs the saved memory; seal: suspend encrypts '
        'what a scrub would zero under a key in the key manager and '
        'resume puts it back; refuse: suspend fails. The strictest source '
        'wins (refuse over scrub over seal).',
}

_CONTINUATION = {
    'name': 'n',
    'pattern': r'[1-9][0-9]?',
    'description': 'The number of the continuation key (1 to %d), whose '
                   'items are appended to the base key\'s in order.'
                   % policy.MAX_CONTINUATION,
}


class SparcExtraSpecValidator(base.ExtraSpecValidator):
    """An ExtraSpecValidator that checks values with sparc-nova's own
    policy parser instead of a regular expression.
    """

    def validate(self, name: str, value: str) -> None:
        """:raises nova.exception.ValidationError: naming the key, the
            value and what is wrong, as ``sparc policy check`` does
        """
        super().validate(name, value)   # the name, by Nova's own regex
        found = problems_of_spec(name, value)
        if found:
            raise nova_exception.ValidationError(
                detail=validation.message(found))

    def _validate_str(self, value: str) -> None:
        """Values are checked in :meth:`validate`."""


def problems_of_spec(name: str, value: str) -> list:
    """The problems of one flavor extra spec on its own; a continuation
    key's items are checked as its base key's are.
    """
    base_key, dot, _ = name.partition('.')
    if not dot:
        return validation.problems({name: value}, policy.FLAVOR)
    found = validation.problems({base_key: value}, policy.FLAVOR)
    return [dataclasses.replace(p, key=name) for p in found]


def _validators() -> list[SparcExtraSpecValidator]:
    found = []
    for key in policy.KEYS:
        if key in policy.CHOICE_KEYS:
            value = {'type': str, 'enum': list(policy.CHOICE_KEYS[key])}
        elif key in policy.BOOL_KEYS:
            value = {'type': str, 'enum': ['true', 'false']}
        else:
            value = {'type': str}
        found.append(SparcExtraSpecValidator(
            name=_PREFIX + key, description=_DESCRIPTIONS[key], value=value))
        if key in policy.LIST_KEYS:
            found.append(SparcExtraSpecValidator(
                name='%s%s.{n}' % (_PREFIX, key),
                description='Continuation of %s%s.' % (_PREFIX, key),
                value=value, parameters=[_CONTINUATION]))
    return found


def register() -> list[SparcExtraSpecValidator]:
    """The validators, as Nova's entry point expects them."""
    return _validators()
