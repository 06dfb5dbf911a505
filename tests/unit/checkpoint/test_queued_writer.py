"""The writer thread of rewrites and sealed-pages files."""

import threading

import pytest

from sparc_nova.checkpoint import queued_writer


def test_tasks_are_written_in_order_and_buffers_go_round():
    written = []
    seen = set()

    def write(task):
        n, buf = task
        if n < 50:
            seen.add(id(buf))
        written.append((n, bytes(buf[:1])))

    w = queued_writer.QueuedWriter('test-writer', write, 2, 16)
    for n in range(50):
        buf = w.buffer()
        buf[0] = n
        w.submit((n, buf), buf)
    w.submit((50, bytearray(b'\xff')))
    w.close()
    assert written == [(n, bytes([n])) for n in range(50)] + [
        (50, b'\xff')]
    # Two buffers, no more, went round (the caller waits for one).
    assert len(seen) == 2


def test_after_an_error_nothing_more_is_written_and_it_is_raised():
    written = []
    failed = threading.Event()

    def write(task):
        if task == 2:
            failed.set()
            raise OSError(28, 'No space left on device')
        written.append(task)

    w = queued_writer.QueuedWriter('test-writer', write, 2, 4)
    for task in range(5):
        w.submit(task)
    failed.wait(5)
    w.stop()
    assert written == [0, 1]
    for call in (w.buffer, lambda: w.submit(9), w.raise_error):
        with pytest.raises(OSError, match='No space left'):
            call()


def test_close_raises_the_error_stop_does_not():
    def write(task):
        raise ValueError('bad task')

    w = queued_writer.QueuedWriter('test-writer', write, 1, 4)
    w.submit(1)
    with pytest.raises(ValueError, match='bad task'):
        w.close()
    w = queued_writer.QueuedWriter('test-writer', write, 1, 4)
    w.submit(1)
    w.stop()
    assert isinstance(w.error, ValueError)


def test_abort_drops_what_is_queued():
    written = []
    release = threading.Event()

    def write(task):
        release.wait(5)
        written.append(task)

    w = queued_writer.QueuedWriter('test-writer', write, 1, 4)
    for task in range(3):
        w.submit(task)
    error = RuntimeError('the caller failed')
    # The first task is being written; the other two are dropped.
    threading.Timer(0.2, release.set).start()
    w.abort(error)
    assert written in ([], [0])
    assert w.error is error
    with pytest.raises(RuntimeError, match='the caller failed'):
        w.buffer()
