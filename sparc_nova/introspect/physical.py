"""The physical memory interface introspection reads through.

Any object with these members will do (the checkpoint engine adapts a
parsed checkpoint to it; tests use a bytes buffer):

* ``ranges``: list of ``(start, end)`` guest physical address ranges
  that are RAM, end exclusive, ascending;
* ``read(addr, size) -> bytes``: ``size`` bytes at guest physical
  ``addr``; raises :class:`PhysicalAddressError` outside ``ranges``;
* ``find(needle) -> iterator of int`` (optional): guest physical addresses
  where ``needle`` starts, for a fast scan; the default walks ``read``.
"""

import typing

from sparc_nova import exception

PAGE_SIZE = 4096
PAGE_SHIFT = 12


class PhysicalAddressError(exception.SparcError):
    """A read outside guest RAM."""

    def __init__(self, address: int):
        self.address = address
        super().__init__('guest physical address 0x%x is not RAM' % address)


class ReadBudgetExceeded(exception.SparcError):
    """More guest memory reads than an operation may take: a cyclic or
    absurdly long structure in guest memory.
    """


class PhysicalMemory(typing.Protocol):
    ranges: list[tuple[int, int]]

    def read(self, addr: int, size: int) -> bytes:
        ...


class BytesMemory:
    """Guest physical memory held in a bytes-like object (tests, small
    dumps): byte N is guest physical address N.
    """

    def __init__(self, data, ranges: list[tuple[int, int]] | None = None):
        self._data = data
        self.ranges = ranges or [(0, len(data))]

    def read(self, addr: int, size: int) -> bytes:
        for start, end in self.ranges:
            if start <= addr and addr + size <= end:
                return bytes(self._data[addr:addr + size])
        raise PhysicalAddressError(addr)

    def find(self, needle: bytes):
        for start, end in self.ranges:
            pos = start
            while True:
                pos = self._data.find(needle, pos, end)
                if pos < 0:
                    break
                yield pos
                pos += 1


def find(memory, needle: bytes, chunk: int = 16 * 1024 * 1024):
    """Guest physical addresses where ``needle`` starts, ascending."""
    if hasattr(memory, 'find'):
        yield from memory.find(needle)
        return
    overlap = len(needle) - 1
    for start, end in memory.ranges:
        pos = start
        while pos < end:
            n = min(chunk, end - pos)
            data = memory.read(pos, n)
            if pos + n < end:
                data += memory.read(pos + n, min(overlap, end - pos - n))
            i = data.find(needle)
            while i >= 0:
                yield pos + i
                i = data.find(needle, i + 1)
            pos += n


class Budget:
    """Counts reads and raises :class:`ReadBudgetExceeded` past a limit.

    Every drgn helper we call reads through this counter, so a cycle in
    any guest structure ends with a clear error instead of a hang::

        with kernel.budget(200000, 'walking the VMAs of pid 42'):
            ...
    """

    def __init__(self):
        self.used = 0
        self.limit = None
        self.what = None

    def charge(self) -> None:
        self.used += 1
        if self.limit is not None and self.used > self.limit:
            limit, what = self.limit, self.what
            self.limit = None
            raise ReadBudgetExceeded(
                'more than %d guest memory reads while %s: the guest '
                'structure is cyclic or corrupt' % (limit, what))
