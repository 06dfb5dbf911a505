"""Options of guest introspection and the memory engine."""

from oslo_config import cfg

opts = [
    cfg.StrOpt('buildid_cache_dir',
               help='Directory of kernel symbols and types for guest '
                    'kernels whose memory does not carry them, one '
                    'subdirectory per kernel BUILD-ID holding any of: '
                    '"btf" (raw BTF), "System.map", "vmlinux" (ELF with '
                    'DWARF or a .BTF section). Needed for guest kernels '
                    'before Linux 6.0 or built without BTF. Empty: no '
                    'cache.'),
]
