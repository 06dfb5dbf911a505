"""Writer transactions that hold SQLite's write lock from their BEGIN.

Under Nova's native threading the harness keeps each database in a
SQLite file in WAL mode, and oslo.db begins every transaction with a
plain (deferred) ``BEGIN``. A writer transaction that reads first holds
only a read snapshot; its first write must then upgrade it to a write
transaction, and SQLite refuses that at once with ``database is locked``
(the busy timeout is not consulted for an upgrade) when another
connection holds the write lock or has committed since the snapshot.
Nova's own ``DatabaseWriteLock`` fixture serialises writer scopes with a
Python lock, which leaves this open to any writer outside it; the
harness has failed a cold migration's ``action_event_start`` that way.

:func:`install` makes the harness begin a transaction with ``BEGIN
IMMEDIATE`` while the thread is inside a writer scope of that database:
the write lock is taken before the first read, and a busy database is
waited for (the driver's 5 s busy timeout) instead of failing. Readers
keep the deferred ``BEGIN`` and never wait for writers.
"""

import collections
import contextlib
import threading

from oslo_db.sqlalchemy import enginefacade
import sqlalchemy

__all__ = ['install']

_scopes = threading.local()


def _open_writer_scopes() -> collections.Counter:
    """Writer scopes open in this thread, by database URL."""
    if not hasattr(_scopes, 'by_url'):
        _scopes.by_url = collections.Counter()
    return _scopes.by_url


def _begin_immediate(conn, cursor, statement, parameters, context,
                     executemany):
    if (statement == 'BEGIN' and conn.dialect.name == 'sqlite' and
            _open_writer_scopes()[str(conn.engine.url)]):
        statement = 'BEGIN IMMEDIATE'
    return statement, parameters


def install() -> None:
    """Begin the transactions of writer scopes with ``BEGIN IMMEDIATE``
    in this process (see the module docstring). Call once, before any
    test sets up a database.
    """
    original = enginefacade._TransactionContextManager._transaction_scope

    @contextlib.contextmanager
    def _counted_scope(manager, context):
        if manager._mode is not enginefacade._WRITER:
            with original(manager, context) as resource:
                yield resource
            return
        url = str(manager.reader.get_engine().url)
        scopes = _open_writer_scopes()
        scopes[url] += 1
        try:
            with original(manager, context) as resource:
                yield resource
        finally:
            scopes[url] -= 1

    enginefacade._TransactionContextManager._transaction_scope = (
        _counted_scope)
    sqlalchemy.event.listen(sqlalchemy.engine.Engine,
                            'before_cursor_execute', _begin_immediate,
                            retval=True)
