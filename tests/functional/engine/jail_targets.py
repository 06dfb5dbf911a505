"""Hostile plan children for the real-guest jail tests: each is started
by a real scrub in place of the planner, and attacks instead.
"""

import os

from tests.unit.engine import jail_targets as attacks


def open_host_file(args, files):
    """A world-readable host file, by path."""
    return attacks.open_host_file({'path': '/etc/passwd'}, files)


def read_parent_memory(args, files):
    # The parent is outside the child's PID namespace; any pid will do,
    # the call itself is what is refused.
    return attacks.read_parent_memory(
        {'pid': os.getppid() or 1, 'address': 0x400000}, files)


new_user_namespace = attacks.clone_new_user
io_uring = attacks.io_uring
fork_many = attacks.fork_many
flood_output = attacks.flood_output
deep_json = attacks.deep_json
