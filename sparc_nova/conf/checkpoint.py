"""Options of the checkpoint format layer."""

from oslo_config import cfg

#: Where the in-place journal's MAC key lives unless configured.
DEFAULT_JOURNAL_KEY_FILE = '/var/lib/sparc-nova/journal.key'
#: Where in-place journals of managed saves live unless configured.
DEFAULT_JOURNAL_DIR = '/var/lib/sparc-nova/journals'

opts = [
    cfg.StrOpt('work_dir',
               help='Directory for temporary files: decompressed memory '
                    'streams and rewritten checkpoints before they replace '
                    'the original. Empty means the directory of the '
                    'checkpoint being processed (keeps the final rename on '
                    'one filesystem).'),
    cfg.IntOpt('max_guest_ram_gib', default=1024, min=1,
               help='Largest guest RAM, in GiB, that a checkpoint may '
                    'claim. A checkpoint that claims more is refused '
                    'before anything is allocated for it.'),
    cfg.IntOpt('max_stream_sections', default=1000000, min=16,
               help='Largest number of sections a QEMU migration stream '
                    'may contain.'),
    cfg.IntOpt('max_vmdesc_bytes', default=16 * 1024 * 1024, min=4096,
               help='Largest QEMU device description (vmdesc JSON) read '
                    'from the end of a migration stream, in bytes.'),
    cfg.IntOpt('max_page_copies', default=16, min=1,
               help='How many times, on average, a guest page may appear '
                    'in one migration stream. Bounds the RAM index.'),
    cfg.StrOpt('journal_key_file', default=DEFAULT_JOURNAL_KEY_FILE,
               help='File holding the key of the HMAC-SHA256 that '
                    'authenticates in-place scrub journals: "sparc '
                    'checkpoint recover" replays only a journal whose MAC '
                    'matches. Created on first use (32 random bytes, mode '
                    '0600, O_EXCL) in a directory that must be owned by '
                    'root or the running user and writable by no one else; '
                    'it is made, mode 0700, when missing. Keep it readable '
                    'by root only.'),
    cfg.StrOpt('journal_dir', default=DEFAULT_JOURNAL_DIR,
               help='Directory of root\'s for the in-place scrub journals '
                    'of managed saves whose own directory may not hold '
                    'one (on Debian and Ubuntu libvirt\'s managed-save '
                    'directory belongs to the QEMU user). With it, the '
                    'privileged daemon patches the scrubbed pages of a raw '
                    'managed save in place instead of rewriting the whole '
                    'image; nova-compute replays what a crash left in it '
                    'when it starts. It must be owned by root and writable '
                    'by no one else; it is made, mode 0700, when missing. '
                    'Empty: such managed saves are rewritten.'),
]
