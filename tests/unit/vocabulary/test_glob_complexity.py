"""A glob is hostile input (instance metadata), and so are the guest's
file names: matching must stay linear, whatever the glob's stars and
``**`` components (a backtracking regex took minutes for one path).
"""

import re
import time

import pytest

from sparc_nova.engine.disk import rules
from sparc_nova.vocabulary import paths

HOSTILE = [
    ('/' + '*a' * 12 + '*b', '/' + 'a' * 250),
    ('/' + '*a' * 12 + '*b', '/' + 'a' * 250 + '/x'),
    ('/**' + '/a/**' * 10 + '/b', '/a' * 200),
    ('/**' + '/*a*/**' * 8 + '/b', '/aa' * 120),
    ('**/' + '?*' * 20 + 'z', '/' + 'q' * 250),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize('glob, path', HOSTILE)
def test_hostile_globs_match_in_linear_time(glob, path):
    assert paths.check_item(glob) is None
    regex = re.compile(paths.glob_to_regex(glob), re.DOTALL)
    started = time.monotonic()
    assert not regex.match(path)
    r = rules.Rules([glob, '/anchor'])
    assert not r.select([path]).removed
    assert time.monotonic() - started < 2


@pytest.mark.parametrize('glob, path, expected', [
    ('/*a*b', '/xaYaZb', True),
    ('/*a*b', '/xaYaZ', False),
    ('/*a*a*b', '/aab', True),
    ('/*a*a*b', '/ab', False),
    ('/*.tar.*', '/x.tar.tar.gz', True),
    ('/**/a/**/b', '/a/a/b', True),
    ('/**/a/**/b', '/x/a/y/b/z', False),
    ('/**/a/**/b/**', '/a/b/c', True),
    ('/**/a/**/b/**', '/a/b', False),
    ('/x/**/**/y', '/x/y', True),
    ('/**/a/b/**/c', '/a/a/b/c', True),
    ('/[*]x*', '/*xy', True),
    ('/[*]x*', '/axy', False),
    ('/**/k*/**/*.pem', '/home/k1/k2/a.pem', True),
    # Classes stay inside one component.
    ('/x[!a]y', '/x/y', False),
    ('/x[!a]y', '/xby', True),
    ('/x[^a]y', '/x^y', True),
    ('/x[^a]y', '/xby', False),
    ('/[]]', '/]', True),
    ('/[!]]', '/a', True),
    ('/[!]]', '/]', False),
    ('/[[]x', '/[x', True),
    ('/[a-c]', '/b', True),
])
def test_linear_matching_keeps_glob_semantics(glob, path, expected):
    regex = re.compile(paths.glob_to_regex(glob), re.DOTALL)
    assert bool(regex.match(path)) is expected
