"""Options of the unprivileged parsing sandbox."""

from oslo_config import cfg

opts = [
    cfg.BoolOpt('sandbox_enabled', default=True,
                help='Parse and introspect guest-controlled data (checkpoint '
                     'contents, guest kernel structures) in an unprivileged '
                     'child process. Turning this off runs that code in the '
                     'calling process with its privileges: for debugging '
                     'only.'),
    cfg.StrOpt('sandbox_user', default='nobody',
               help='User the sandbox child runs as when sparc-nova runs '
                    'as root. It must not own any file.'),
    cfg.StrOpt('sandbox_group', default='nogroup',
               help='Group the sandbox child runs as when sparc-nova runs '
                    'as root.'),
    cfg.IntOpt('sandbox_memory_mib', default=4096, min=256,
               help='Address space the sandbox child may use, in MiB, on '
                    'top of the size of the checkpoint files it maps.'),
    cfg.IntOpt('sandbox_cpu_seconds', default=900, min=10,
               help='CPU time limit of the sandbox child, in seconds.'),
    cfg.IntOpt('sandbox_timeout', default=1800, min=10,
               help='Wall-clock limit of the sandbox child, in seconds; it '
                    'is killed past it.'),
    cfg.BoolOpt('sandbox_require_seccomp', default=True,
                help='Refuse to introspect a guest when the sandbox child '
                     'cannot install its seccomp allow-list (Debian\'s '
                     'python3-seccomp is missing, or the kernel has no '
                     'seccomp filters). Setting this to false lets the '
                     'scrub run with the other confinements only; the log '
                     'and the scrub report say which were in force.'),
    cfg.BoolOpt('sandbox_spare', default=True,
                help='Keep one sandbox child started ahead in the Nova '
                     'driver\'s privileged daemon, waiting for the next '
                     'scrub: each scrub then skips the child\'s start-up '
                     '(interpreter, imports, namespaces: about 0.3 s). The '
                     'idle child holds no guest data and no file (it runs '
                     'as sandbox_user in its own namespaces, and jails '
                     'itself fully once given its files) and serves one '
                     'scrub; it '
                     'costs about 65 MiB resident (35 MiB of it its own), '
                     'in two processes (the child and its worker in its '
                     'PID namespace). Takes effect from the first scrub '
                     'after the daemon starts.'),
    cfg.IntOpt('sandbox_max_result_mib', default=256, min=1,
               help='Largest result (a scrub plan) the sandbox child may '
                    'return, in MiB.'),
]
