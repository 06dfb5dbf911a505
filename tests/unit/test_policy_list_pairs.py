"""policy.list_pairs: a list written as a key and its continuation keys."""

import pytest

from sparc_nova import exception
from sparc_nova import policy


def test_no_items_no_keys():
    assert policy.list_pairs(policy.EXCLUDE_PATHS, []) == {}


def test_short_list_is_one_key():
    assert policy.list_pairs(policy.EXCLUDE_PROCESSES,
                             ['keepassxc', 'gpg-agent']) == {
        'sparc:exclude_processes': 'keepassxc,gpg-agent'}


def test_commas_inside_items_are_escaped():
    pairs = policy.list_pairs(policy.EXCLUDE_PATHS, ['/a,b', '/c'])
    assert pairs == {'sparc:exclude_paths': '/a\\,b,/c'}
    assert policy.parse(pairs, policy.INSTANCE).exclude_paths == ['/a,b',
                                                                  '/c']


def test_image_source_uses_its_prefix():
    assert policy.list_pairs(policy.EXCLUDE_PATHS, ['/x'], policy.IMAGE) == {
        'sparc_exclude_paths': '/x'}


def test_long_list_uses_numbered_continuation_keys():
    items = ['/home/user%02d/.ssh/**' % i for i in range(40)]
    pairs = policy.list_pairs(policy.EXCLUDE_PATHS, items)
    assert list(pairs) == ['sparc:exclude_paths', 'sparc:exclude_paths.1',
                           'sparc:exclude_paths.2', 'sparc:exclude_paths.3']
    assert all(len(v) <= policy.MAX_VALUE_LENGTH for v in pairs.values())
    # Filled greedily: only the last key is short.
    assert all(len(v) > policy.MAX_VALUE_LENGTH - 25
               for v in list(pairs.values())[:-1])
    assert policy.parse(pairs, policy.INSTANCE).exclude_paths == items


def test_item_at_the_limit_fits_alone():
    item = '/' + 'a' * (policy.MAX_VALUE_LENGTH - 1)
    pairs = policy.list_pairs(policy.EXCLUDE_PATHS, ['/b', item])
    assert pairs == {'sparc:exclude_paths': '/b',
                     'sparc:exclude_paths.1': item}
    assert policy.parse(pairs, policy.INSTANCE).exclude_paths == ['/b', item]


def test_item_too_long_alone_is_refused_by_parse():
    item = '/' + 'a' * policy.MAX_VALUE_LENGTH
    pairs = policy.list_pairs(policy.EXCLUDE_PATHS, ['/b', item])
    assert pairs['sparc:exclude_paths.1'] == item
    with pytest.raises(exception.InvalidPolicy) as e:
        policy.parse(pairs, policy.INSTANCE)
    assert 'longer than 255 characters' in str(e.value)


def test_not_a_list_key():
    with pytest.raises(ValueError):
        policy.list_pairs(policy.FOLLOW_IPC, ['true'])
