"""Running an engine without stalling nova-compute.

In eventlet mode a long call in the calling greenthread would stop every
other greenthread of the service (RPC, periodic tasks, other instances),
so the call runs in eventlet's pool of native threads and a greenthread
logs its progress; the native thread only stores numbers, it never logs
(logging takes green locks). In native threading mode the caller is
already a worker thread and the call runs in it.
"""

import time
from typing import Any, Callable

from oslo_log import log as logging

from nova import utils as nova_utils
from sparc_nova import conf

LOG = logging.getLogger(__name__)


class Progress:
    """A progress callback and its latest values: ``progress(done, total)``
    (memory engine) or ``progress(step, steps, description)`` (disk
    engine).
    """

    def __init__(self, label: str, instance=None):
        self.label = label
        self.instance = instance
        self.done = 0
        self.total = 0
        self.step = ''
        self.logged_at = time.monotonic()

    def __call__(self, done: int, total: int, step: str = '') -> None:
        self.done, self.total, self.step = done, total, step

    def log(self) -> None:
        if self.total > 0:
            LOG.info('%(label)s: %(pct)d%%%(step)s',
                     {'label': self.label,
                      'pct': 100 * self.done // self.total,
                      'step': ' (%s)' % self.step if self.step else ''},
                     instance=self.instance)

    def log_if_due(self) -> None:
        now = time.monotonic()
        if now - self.logged_at >= conf.CONF.sparc.progress_log_interval:
            self.logged_at = now
            self.log()


def call(func: Callable[..., Any], *args, label: str, instance=None,
         **kwargs) -> Any:
    """``func(*args, progress=..., **kwargs)`` off the main loop, with
    its progress logged every ``[sparc] progress_log_interval`` seconds.
    Returns what ``func`` returns and raises what it raises.
    """
    progress = Progress(label, instance)
    kwargs['progress'] = progress
    LOG.info('%s: started', label, instance=instance)
    started = time.monotonic()
    if nova_utils.concurrency_mode_threading():
        def threaded_progress(done, total, step=''):
            progress(done, total, step)
            progress.log_if_due()
        kwargs['progress'] = threaded_progress
        result = func(*args, **kwargs)
    else:
        result = _call_in_native_thread(progress, func, args, kwargs)
    LOG.info('%(label)s: done in %(secs).1f s',
             {'label': label, 'secs': time.monotonic() - started},
             instance=instance)
    return result


def _call_in_native_thread(progress: Progress, func, args, kwargs):
    # Native threading mode forbids importing eventlet: import it here.
    from eventlet import tpool

    eventlet = nova_utils.get_eventlet()
    interval = conf.CONF.sparc.progress_log_interval

    def log_progress():
        while True:
            eventlet.sleep(interval)
            progress.log()

    logger = eventlet.spawn(log_progress)
    try:
        return tpool.execute(func, *args, **kwargs)
    finally:
        logger.kill()
