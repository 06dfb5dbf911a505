"""Collect the Nova functional tests only in a process of their own.

With ``SPARC_NOVA_FUNCTIONAL=1`` Nova's concurrency mode is set up here,
before any test module imports Nova: eventlet monkey patching by default,
native threading with ``OS_NOVA_DISABLE_EVENTLET_PATCHING=true``, where
writer transactions begin with ``BEGIN IMMEDIATE``
(:mod:`.sqlite_writers`).
Without it (a plain ``pytest tests``), nothing here is imported or
collected.
"""

import os

CHILD_ENV = 'SPARC_NOVA_FUNCTIONAL'

if os.environ.get(CHILD_ENV):
    from nova import monkey_patch
    monkey_patch.patch()
    from nova import utils as nova_utils
    if nova_utils.concurrency_mode_threading():
        from tests.nova_functional import sqlite_writers
        sqlite_writers.install()
else:
    collect_ignore_glob = ['test_*.py', 'base.py']
