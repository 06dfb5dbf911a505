"""The merge's scoped path rules, with the real merge (no Nova): what
each source's negations reach.
"""

import pytest

from sparc_nova import policy

FLAVOR = {'sparc:exclude_paths': '/root/**,!/root/.profile'}
IMAGE = {'sparc_exclude_paths': '/opt/app/keys/**,!/opt/app/keys/*.pub'}


def test_each_source_is_a_scope_with_the_negations_above_it():
    effective = policy.from_sources(
        flavor=FLAVOR, image=IMAGE,
        instance={'sparc:exclude_paths': '/srv/**,!*,preset:tmp'})
    assert effective.path_rules == [
        'scope:flavor', '/root/**', '!/root/.profile',
        'scope:image', '/opt/app/keys/**', '!/opt/app/keys/*.pub',
        '!/root/.profile',
        'scope:instance', '/srv/**', '!*', 'preset:tmp', '!/root/.profile',
        '!/opt/app/keys/*.pub']


def test_negations_alone_make_no_scope_but_reach_down():
    effective = policy.from_sources(
        image={'sparc_exclude_paths': '!**/*.pub'},
        instance={'sparc:exclude_paths': '/home/*/.ssh/**'})
    assert effective.path_rules == ['scope:instance', '/home/*/.ssh/**',
                                    '!**/*.pub']
    assert not policy.from_sources(
        instance={'sparc:exclude_paths': '!*'}).excludes_anything


@pytest.mark.parametrize('negation', ['!*', '!/*', '!**/*', '!**',
                                      '!/root/**', '!/root/a'])
def test_instance_negations_never_reach_flavor_or_image(negation):
    effective = policy.from_sources(
        flavor=FLAVOR, image=IMAGE,
        instance={'sparc:exclude_paths': negation})
    for path, by in (('/root/a', ['flavor']),
                     ('/opt/app/keys/k', ['image'])):
        explained = policy.explain_path(effective, path)
        assert (explained['excluded'], explained['by']) == (True, by)


def test_the_digest_covers_the_scopes():
    """Same items, different sources: different effective rules, so
    different digests.
    """
    as_flavor = policy.from_sources(
        flavor={'sparc:exclude_paths': '/a/**'},
        instance={'sparc:exclude_paths': '!/a/b'})
    as_instance = policy.from_sources(
        instance={'sparc:exclude_paths': '/a/**,!/a/b'})
    assert as_flavor.exclude_paths == as_instance.exclude_paths
    assert as_flavor.digest != as_instance.digest
    assert policy.explain_path(as_flavor, '/a/b')['excluded']
    assert not policy.explain_path(as_instance, '/a/b')['excluded']


def test_explain_path_refuses_a_relative_path():
    with pytest.raises(ValueError):
        policy.explain_path(policy.from_sources(), 'etc/passwd')
