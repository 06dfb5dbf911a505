"""One table of valid and invalid selectors and path rules, checked
against every reader of the grammar: the vocabulary itself, the policy
(what Nova's sources may hold), the memory engine (process selectors and
page-cache rules) and the disk engine (file rules). They must agree.
"""

import pytest

from sparc_nova.engine.disk import rules as disk_rules
from sparc_nova.engine import errors as engine_errors
from sparc_nova.engine import memory
from sparc_nova.engine import selectors as engine_selectors
from sparc_nova import policy
from sparc_nova.vocabulary import InvalidRule
from sparc_nova.vocabulary import paths
from sparc_nova.vocabulary import selectors

VALID_SELECTORS = [
    'keepassxc', 'Web Content', 'a' * 15, 'name:vault', 'name:a:b',
    'exe:/usr/bin/keepassxc', 'exe:/usr/bin/gpg*', 'exe:/**/bin/gpg*',
    'exe:/opt/My App/bin/app', 'exe:/opt/[ab]*', 'pid:2', 'pid:4194304',
    'uid:0', 'uid:4294967294', 'cgroup:/', 'cgroup:/user.slice/x.scope',
]
INVALID_SELECTORS = [
    'a' * 16, 'name:' + 'a' * 16, 'name:', '/usr/bin/vault', 'usr/bin/x',
    'proc:vault', 'weird:thing', 'pid:', 'pid:x', 'pid:-1', 'pid:007',
    'pid:0', 'pid:1', 'pid:4194305', 'pid:\u00b2', 'uid:', 'uid:root',
    'uid:1.5', 'uid:4294967295', 'uid:01', 'exe:', 'exe:bin/vault',
    'exe:*/bin/gpg', 'exe:/a/../b', 'exe:/usr/a**', 'exe:/usr/[ab',
    'exe:/*', 'cgroup:', 'cgroup:user.slice', 'cgroup:/a/../b',
    'x' * 5000,
]
VALID_PATHS = [
    '/home/*/.ssh/**', '/root/.bash_history', '/tmp/**', '*.kdbx',
    '**/id_rsa', '.ssh/id_*', '/srv/a b/secret', '/srv/[[]x', '/f?o',
    '/[ab]x', '/home/**/id_*', '!/home/**/*.pub', '!*', '!/*', '!**/*',
    '!**', 'preset:ssh-private-keys', 'preset:tmp',
]
INVALID_PATHS = [
    '/', '!/', '//', '*', '/*', '**', '/**', '**/*', '/**/**', '/*/?',
    '/[a-z]*', '../etc/shadow', '/home/../etc/shadow', '/home/./x',
    '/home/a**', '/home/**b/c', '/srv/[ab', '/a\0b', 'preset:nope',
    '!preset:tmp', '/' + 'a' * 5000,
]


@pytest.mark.parametrize('text', VALID_SELECTORS + INVALID_SELECTORS)
def test_selectors_agree(text):
    valid = text in VALID_SELECTORS
    assert (selectors.check(text) is None) is valid
    assert (policy.validate_source({'sparc:exclude_processes': text},
                                   policy.INSTANCE) == []) is valid
    if valid:
        assert engine_selectors.parse(text) == selectors.parse(text)
        assert selectors.parse(str(selectors.parse(text))) == \
            selectors.parse(text)
    else:
        with pytest.raises(engine_errors.SelectorError) as e:
            engine_selectors.parse(text)
        assert selectors.check(text) in str(e.value)
        with pytest.raises(engine_errors.SelectorError):
            memory.scrub_checkpoint('/nonexistent.save', [text],
                                    dry_run=True)


@pytest.mark.parametrize('text', VALID_PATHS + INVALID_PATHS)
def test_path_rules_agree(text):
    valid = text in VALID_PATHS
    assert (paths.check_item(text) is None) is valid
    assert (policy.validate_source({'sparc:exclude_paths': text},
                                   policy.INSTANCE) == []) is valid
    # The disk engine's rules, and the page-cache rules the memory engine
    # builds from the same list (engine/kernel_copies.py).
    if valid:
        disk_rules.Rules(['/anchor', text])
    else:
        with pytest.raises(ValueError) as e:
            disk_rules.Rules(['/anchor', text])
        assert paths.check_item(text) in str(e.value)
        with pytest.raises(InvalidRule):
            memory.scrub_checkpoint('/nonexistent.save', ['vault'],
                                    exclude_paths=['/anchor', text],
                                    dry_run=True)


def test_a_valid_rule_reaches_the_memory_engine_past_the_grammar():
    with pytest.raises(Exception) as e:
        memory.scrub_checkpoint('/nonexistent.save', ['vault'],
                                exclude_paths=['/anchor', '!*'],
                                dry_run=True)
    assert not isinstance(e.value, InvalidRule)
