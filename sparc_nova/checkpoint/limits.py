"""Bounds applied while parsing checkpoints (hostile input)."""

import dataclasses

GiB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class Limits:
    """Upper bounds for what a checkpoint may claim.

    :ivar max_guest_ram: bytes of RAM all RAMBlocks together may claim.
    :ivar max_sections: sections in one migration stream.
    :ivar max_vmdesc: bytes of vmdesc JSON.
    :ivar max_page_copies: average copies of a page in one stream; the RAM
        index holds at most ``max_page_copies * pages + 65536`` records.
    :ivar max_header_data: bytes of XML a libvirt save header may declare.
    :ivar helper_user: user the decompressor and compressor programs run
        as when sparc-nova runs as root (``[sparc] sandbox_user``); they
        get only the descriptors they read and write.
    :ivar helper_group: their group (``[sparc] sandbox_group``).
    """

    max_guest_ram: int = 1024 * GiB
    max_sections: int = 1000000
    max_vmdesc: int = 16 * 1024 * 1024
    max_page_copies: int = 16
    max_header_data: int = 64 * 1024 * 1024
    helper_user: str | None = 'nobody'
    helper_group: str | None = 'nogroup'

    @classmethod
    def from_conf(cls, conf) -> 'Limits':
        """Build limits from an oslo.config ``ConfigOpts`` with ``[sparc]``
        registered.
        """
        s = conf.sparc
        return cls(max_guest_ram=s.max_guest_ram_gib * GiB,
                   max_sections=s.max_stream_sections,
                   max_vmdesc=s.max_vmdesc_bytes,
                   max_page_copies=s.max_page_copies,
                   helper_user=s.sandbox_user,
                   helper_group=s.sandbox_group)


DEFAULT = Limits()
