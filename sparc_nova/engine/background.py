"""A piece of work run in a thread of its own while the caller does
another (a seal writes its sealed-pages file while the checkpoint is
rewritten; an unseal drops the sealed-pages file's cached pages while it
reads the unsealed checkpoint back).

The work is a function of one argument, a :class:`threading.Event` set
when the caller asks it to stop: it checks it between its steps and
raises if it is set. Its result or its exception is handed to the
caller by :meth:`Background.result`, in the caller's thread.
"""

import threading
import typing

__all__ = ['Background']

T = typing.TypeVar('T')


class Background(threading.Thread, typing.Generic[T]):
    """Runs ``work(stopping)`` once :meth:`start` is called."""

    def __init__(self, name: str,
                 work: typing.Callable[[threading.Event], T]) -> None:
        super().__init__(name=name, daemon=True)
        self._work = work
        self._stopping = threading.Event()
        self._result: T | None = None
        self._error: BaseException | None = None
        self._finished = False

    def run(self) -> None:
        try:
            self._result = self._work(self._stopping)
            self._finished = True
        except BaseException as e:
            self._error = e

    def result(self) -> T:
        """Wait for the work to end: what it returned.

        :raises: what the work raised.
        """
        self.join()
        if self._error is not None:
            raise self._error
        return typing.cast(T, self._result)

    def stop(self) -> None:
        """Ask the work to stop at its next step and wait for it to end
        (whatever it raised is dropped; :attr:`finished` tells whether it
        completed all the same).
        """
        self._stopping.set()
        if self.ident is not None:
            self.join()

    @property
    def finished(self) -> bool:
        """Whether the work ran to its end and returned."""
        return self._finished
