"""Options of the disk scrubber (snapshot images)."""

from oslo_config import cfg

opts = [
    cfg.StrOpt('disk_work_dir',
               help='Directory for the raw working copy of an image '
                    'being scrubbed (needs room for the data the image '
                    'holds; the copy is sparse). Empty means the '
                    'directory of the destination image.'),
    cfg.StrOpt('disk_accel', default='auto',
               choices=[('auto', 'use KVM when a probe shows QEMU can '
                                 'run a KVM vCPU here, else TCG'),
                        ('kvm', 'always ask for KVM'),
                        ('tcg', 'always use TCG (software emulation)')],
               help='Accelerator of the libguestfs appliance.'),
    cfg.IntOpt('disk_appliance_memory_mib', default=0, min=0,
               help='Memory of the libguestfs appliance in MiB; 0 keeps '
                    'the libguestfs default.'),
    cfg.IntOpt('disk_appliance_launch_timeout_s', default=300, min=1,
               help='Seconds a libguestfs appliance launch may take (about '
                    '30 s under TCG) before it is killed; a launch with '
                    'KVM allowed is then tried once more on TCG, and the '
                    'scrub report notes it.'),
    cfg.StrOpt('disk_appliance_cache_dir',
               default='/var/cache/sparc-nova/appliance',
               help='Directory where the libguestfs appliance that boots '
                    'the host\'s kernel uncompressed is built (once per '
                    'kernel and package set, in 3-5 s) and kept (about '
                    '750 MB). Under TCG it starts about 3 s sooner than '
                    'libguestfs\' own appliance, which decompresses the '
                    'kernel with the emulated CPU. It must belong to the '
                    'user running the scrub and be writable by no one '
                    'else. Empty: boot libguestfs\' own appliance.'),
    cfg.StrOpt('disk_output_format', default='qcow2',
               choices=['qcow2', 'raw'],
               help='Format of scrubbed images when the caller does not '
                    'choose one.'),
    cfg.BoolOpt('disk_allow_unverified', default=False,
                help='Skip (instead of failing on) LUKS volumes without a '
                     'key, unknown or unformatted volumes, filesystems '
                     'that cannot be mounted, and matches on filesystems '
                     'no backend can scrub. Skipped volumes are reported '
                     'as unverified.'),
    cfg.BoolOpt('disk_strict_rules', default=False,
                help='Fail when a path glob or preset matches nothing '
                     '(otherwise such rules are only reported).'),
    cfg.BoolOpt('disk_report_paths', default=False,
                help='Put the guest paths of removed files in scrub '
                     'reports. When false, reports hold their SHA-256 '
                     'digests (file names can be secrets).'),
    cfg.StrOpt('disk_verify_kept', default='sample',
               choices=[('sample', 'hash the kept files next to removed '
                                   'ones and a random sample of the rest'),
                        ('all', 'hash every kept file')],
               help='How many kept files are checked to be byte-identical '
                    'after a scrub.'),
    cfg.IntOpt('disk_verify_sample_size', default=200, min=1,
               help='Number of kept files hashed before and after a scrub '
                    'when disk_verify_kept is "sample".'),
    cfg.IntOpt('disk_canary_windows', default=4, min=1, max=64,
               help='Windows sampled from each removed file for canaries '
                    '(start, end and evenly spaced between).'),
    cfg.IntOpt('disk_qemu_img_inspect_cpu_s', default=30, min=0,
               help='CPU-time limit in seconds of "qemu-img info" and '
                    '"qemu-img check" on a source image (a crafted '
                    'header can make them loop; Nova uses 30). 0: no '
                    'limit.'),
    cfg.IntOpt('disk_qemu_img_inspect_address_space_mib', default=1024,
               min=0,
               help='Address-space limit in MiB of "qemu-img info" and '
                    '"qemu-img check" (a crafted header can make them '
                    'allocate without end; Nova uses 1024). 0: no '
                    'limit.'),
    cfg.IntOpt('disk_qemu_img_convert_cpu_s', default=3600, min=0,
               help='CPU-time limit in seconds of "qemu-img convert" and '
                    '"qemu-img compare", which read a whole image: raise '
                    'it for images of several hundred GiB on slow '
                    'hosts. 0: no limit.'),
    cfg.IntOpt('disk_qemu_img_convert_address_space_mib', default=8192,
               min=0,
               help='Address-space limit in MiB of "qemu-img convert" '
                    'and "qemu-img compare" (their I/O threads reserve '
                    'stacks and malloc arenas of address space, which '
                    'grows with the host\'s cores). 0: no limit.'),
]
