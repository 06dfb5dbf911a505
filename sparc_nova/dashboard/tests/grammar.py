"""Counts whose noun does not agree with them, in text people read.

The browser tests check the text of every page they screenshot with
:func:`count_disagreements`: "1 paths", "1 rules matched nothing" or
"2 frame rewritten" fail the test. Only the nouns the product counts
are checked (:data:`NOUNS`), so that ordinary words after a number
("2 GiB", "1 day ago") are not taken for counted ones.
"""

import re

__all__ = ['NOUNS', 'count_disagreements']

#: Singular -> plural of every noun the product's texts count (report
#: summaries, scrub records, panel texts).
NOUNS = {
    'path': 'paths', 'rule': 'rules', 'file': 'files',
    'frame': 'frames', 'thread': 'threads', 'process': 'processes',
    'object': 'objects', 'copy': 'copies', 'canary': 'canaries',
    'volume': 'volumes', 'snapshot': 'snapshots',
    'operation': 'operations', 'occurrence': 'occurrences',
    'subvolume': 'subvolumes', 'corruption': 'corruptions',
    'device': 'devices', 'journal': 'journals', 'leftover': 'leftovers',
    'policy': 'policies', 'request': 'requests', 'marker': 'markers',
}

_PLURALS = {plural: singular for singular, plural in NOUNS.items()}
# A count (not part of a larger number, a version or a size such as
# "1.5"), then one of the nouns, optionally after one adjective such as
# "removed" or "kernel".
_COUNTED = re.compile(
    r'(?<![\w.,/:-])(\d+) (?:(?:removed|kernel|free) )?([a-z]+)\b')


def count_disagreements(text: str) -> list[str]:
    """The phrases of ``text`` where a count and its noun disagree: a
    count of 1 with a plural noun, or another count with a singular one
    ("0 path", "2 rule"). Returns them as found, in order.
    """
    found = []
    for match in _COUNTED.finditer(text):
        count, noun = int(match.group(1)), match.group(2)
        if count == 1 and noun in _PLURALS:
            found.append(match.group(0))
        elif count != 1 and noun in NOUNS:
            found.append(match.group(0))
    return found
