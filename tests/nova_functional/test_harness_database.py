"""The harness's database: a writer transaction commits although another
connection wrote while it was open (see :mod:`.sqlite_writers`).
"""

import threading
import uuid

from nova import context as nova_context
from nova.db.main import api as main_db_api
from nova.db.main import models
from nova import test
from nova import utils as nova_utils
import sqlalchemy
from sqlalchemy import pool

from tests.nova_functional import base

#: How long the writer waits for the other connection's commit, s: the
#: other connection commits within it unless the writer holds the lock.
OTHER_COMMIT_WAIT = 1.0


class WriterTransactionTest(test.TestCase):

    _clear_attrs = base.SparcServersTestBase._clear_attrs

    def test_writer_that_read_first_commits_past_another_writer(self):
        engine = main_db_api.get_engine()
        if not nova_utils.concurrency_mode_threading():
            # Eventlet mode: one in-memory database on one shared
            # connection, where no two transactions ever overlap.
            self.assertIsInstance(engine.pool, pool.StaticPool)
            return
        table = models.InstanceAction.__table__
        instance = str(uuid.uuid4())
        ctxt = nova_context.get_admin_context()
        writer_read = threading.Event()
        other_done = threading.Event()
        errors = []

        def other_writer():
            # A writer outside any writer scope: a plain BEGIN, then the
            # insert waits for the write lock like any SQLite writer.
            writer_read.wait(10)
            try:
                with engine.begin() as conn:
                    conn.execute(table.insert().values(
                        action='other', instance_uuid=instance,
                        request_id='req-other'))
            except Exception as e:
                errors.append(('other', e))
            finally:
                other_done.set()

        thread = threading.Thread(target=other_writer)
        thread.start()
        try:
            with main_db_api.get_context_manager(ctxt).writer.using(ctxt):
                ctxt.session.execute(
                    sqlalchemy.select(sqlalchemy.func.count())
                    .select_from(table)).scalar()
                writer_read.set()
                other_done.wait(OTHER_COMMIT_WAIT)
                ctxt.session.execute(table.insert().values(
                    action='writer', instance_uuid=instance,
                    request_id='req-writer'))
        except Exception as e:
            errors.append(('writer', e))
        finally:
            writer_read.set()
            thread.join(30)
        self.assertEqual([], errors)
        with engine.connect() as conn:
            actions = conn.execute(
                sqlalchemy.select(table.c.action)
                .where(table.c.instance_uuid == instance)).scalars().all()
        self.assertEqual(['other', 'writer'], sorted(actions))
