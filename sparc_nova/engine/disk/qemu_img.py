"""qemu-img, run the one way a scrub runs it: with an explicit format,
an absolute path, and under CPU-time and address-space limits.

A crafted image header can make qemu-img allocate or loop without end
(the reason Nova runs ``qemu-img info`` under 1 GiB of address space
and 30 s of CPU time); the limits are applied with oslo.concurrency's
``prlimit`` wrapper. Paths are made absolute so that a name holding a
colon is never read as a protocol (``json:``, ``nbd:``...).
"""

import dataclasses
import os

from oslo_concurrency import processutils

__all__ = ['Limits', 'Result', 'run']

MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits of qemu-img; 0 means no limit.

    ``*_cpu_s`` are seconds of CPU time, ``*_address_space_mib`` MiB of
    virtual address space. ``inspect`` limits apply to ``info``,
    ``check`` and ``map`` (which read metadata only), ``convert`` limits to
    ``convert`` and ``compare`` (which read the whole image: their CPU
    time grows with its size).
    """
    inspect_cpu_s: int = 30
    inspect_address_space_mib: int = 1024
    convert_cpu_s: int = 3600
    convert_address_space_mib: int = 8192

    def for_command(self, command: str) -> processutils.ProcessLimits:
        """The ProcessLimits of qemu-img ``command``."""
        if command in ('info', 'check', 'map'):
            cpu, space = self.inspect_cpu_s, self.inspect_address_space_mib
        else:
            cpu, space = self.convert_cpu_s, self.convert_address_space_mib
        return processutils.ProcessLimits(
            cpu_time=cpu or None,
            address_space=space * MIB if space else None)


@dataclasses.dataclass
class Result:
    """Exit status (negative: killed by that signal) and output."""
    returncode: int
    stdout: str
    stderr: str


def run(command: str, args: list[str], paths: list[str],
        limits: Limits) -> Result:
    """``qemu-img COMMAND ARGS PATHS`` under ``limits``.

    ``args`` must carry the format of every image (``-f``/``-F``/
    ``-O``): nothing here adds or checks it. ``paths`` are made
    absolute.

    :raises OSError: qemu-img (or the Python interpreter of the prlimit
        wrapper) cannot be run.
    """
    argv = ['qemu-img', command] + args + [os.path.abspath(p)
                                           for p in paths]
    try:
        out, err = processutils.execute(
            *argv, prlimit=limits.for_command(command),
            env_variables=dict(os.environ, LC_ALL='C'))
    except processutils.ProcessExecutionError as e:
        code = e.exit_code if isinstance(e.exit_code, int) else -1
        return Result(code, e.stdout or '', e.stderr or '')
    return Result(0, out, err)
