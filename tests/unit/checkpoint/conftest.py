"""Fixtures of the checkpoint layer's tests."""

import os

import pytest


@pytest.fixture
def journal_key(tmp_path_factory):
    """A journal key file path in a private directory of its own (made
    on first use, like ``[sparc] journal_key_file``).
    """
    d = tmp_path_factory.mktemp('keys')
    os.chmod(d, 0o700)
    return str(d / 'journal.key')
