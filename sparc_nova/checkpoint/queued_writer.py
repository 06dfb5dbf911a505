"""A writer thread fed by one caller, over buffers allocated once.

A rewrite of a checkpoint and the writer of a sealed-pages file both
build their output in memory and hand it to the kernel: the system calls
that copy a GiB into the page cache take about as long as building it,
so a thread of its own makes them while the caller builds what comes
next. :class:`QueuedWriter` runs the caller's write function on each
task, in order, in that thread.

The buffers the tasks carry are allocated once and recycled: a fresh
megabyte buffer per write costs its page faults every time, and their
number bounds what is queued. After the first error nothing more is
written (a file is never written after a gap); the error is raised in the
caller's thread by the next :meth:`~QueuedWriter.buffer`,
:meth:`~QueuedWriter.submit` or :meth:`~QueuedWriter.close`.
"""

import queue
import threading
import typing

__all__ = ['QueuedWriter']


class QueuedWriter:
    """Runs ``write(task)`` for each task :meth:`submit` queues, in a
    thread named ``name``; ``buffers`` buffers of ``size`` bytes
    (bytearrays) go round between the caller and the thread.
    """

    def __init__(self, name: str, write: typing.Callable[[object], None],
                 buffers: int, size: int) -> None:
        self._write = write
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(buffers):
            self._free.put(bytearray(size))
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        #: The first error of a write, or None.
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, daemon=True,
                                        name=name)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            item = self._tasks.get()
            if item is None:
                return
            task, buf = item
            try:
                if self.error is None:
                    self._write(task)
            except BaseException as e:
                self.error = e
            finally:
                if buf is not None:
                    self._free.put(buf)

    def raise_error(self) -> None:
        """Raise the first error of a write, if there was one."""
        if self.error is not None:
            raise self.error

    def buffer(self) -> bytearray:
        """A free buffer (waits until the thread gives one back).

        :raises: the first error of a write.
        """
        self.raise_error()
        return self._free.get()

    def submit(self, task: object, buf: bytearray | None = None) -> None:
        """Queue ``task``; ``buf`` (from :meth:`buffer`), if given, is the
        thread's until the task is done, then free again.

        :raises: the first error of a write (``task`` is not queued).
        """
        self.raise_error()
        self._tasks.put((task, buf))

    def stop(self) -> None:
        """Wait until the thread has done what is queued, and end it
        (after a failure of the caller: nothing is raised).
        """
        self._tasks.put(None)
        self._thread.join()

    def abort(self, error: BaseException) -> None:
        """After a failure of the caller: what is still queued is dropped
        (unless a write failed before, ``error`` is the writer's error
        from now on), and the thread ends.
        """
        self.error = self.error or error
        self.stop()

    def close(self) -> None:
        """:meth:`stop`, then raise the first error of a write."""
        self.stop()
        self.raise_error()
