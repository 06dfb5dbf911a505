"""Escaping of guest strings for terminals and logs."""

import pytest

from sparc_nova.printable import printable


@pytest.mark.parametrize('text, shown', [
    ('vault', 'vault'),
    ('café 😀', 'café 😀'),
    ('a\x1b[2J\x1b]0;owned\x07b', 'a\\x1b[2J\\x1b]0;owned\\x07b'),
    ('\x9b31m', '\\x9b31m'),                       # C1 CSI
    ('x\u202egnp.exe', 'x\\u202egnp.exe'),         # right-to-left override
    ('\u2066a\u2069', '\\u2066a\\u2069'),          # bidi isolates
    ('zero\u200bwidth', 'zero\\u200bwidth'),
    ('line\nFAKE log line', 'line\\nFAKE log line'),
    ('cr\rtab\t', 'cr\\rtab\\t'),
    ('sep\u2028', 'sep\\u2028'),
    ('back\\slash', 'back\\\\slash'),
    (b'\xff\xfeok'.decode('utf-8', 'surrogateescape'), '\\xff\\xfeok'),
    (42, '42'),
])
def test_printable(text, shown):
    assert printable(text) == shown
    assert printable(text).isprintable()


def test_escapes_read_back_unambiguously():
    # A literal backslash-x text and an escaped byte differ.
    assert printable('\\x1b') != printable('\x1b')


@pytest.mark.parametrize('text, limit, shown', [
    ('abcdef', 6, 'abcdef'),
    ('abcdefg', 6, 'abc...'),
    ('\x1b' * 10, 9, '\\x1b...'),       # an escape is never cut in half
    ('ab\x1bcd', 8, 'ab\\x1bcd'),
    ('ab\x1bcd', 7, 'ab...'),
])
def test_limit(text, limit, shown):
    assert printable(text, limit=limit) == shown
    assert len(printable(text, limit=limit)) <= limit
