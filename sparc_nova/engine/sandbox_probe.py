"""What a sandbox child can and cannot do, reported from inside it
(used by the sandbox's tests and by operators checking a compute node).
"""


def _try(fn) -> str:
    try:
        fn()
        return 'allowed'
    except OSError as e:
        return 'denied: %s' % (e.strerror or e)


def confinement(args: dict, files: dict) -> dict:
    """Report the child's identity, capabilities, limits and what
    happens when it tries to escape.
    """
    import resource
    import socket
    status = {}
    with open('/proc/self/status') as f:
        for line in f:
            key, _, value = line.partition(':')
            if key in ('Uid', 'Gid', 'Groups', 'CapEff', 'CapPrm', 'CapBnd',
                       'CapAmb', 'NoNewPrivs', 'Seccomp'):
                status[key] = value.strip()
    given = {name: len(f.read(16)) for name, f in files.items()}

    def connect():
        s = socket.socket()
        try:
            s.settimeout(2)
            s.connect(('127.0.0.1', 22))
        finally:
            s.close()

    def write_tmp():
        with open('/tmp/.sparc-sandbox-probe', 'w') as f:
            f.write('x')
    return {
        'status': status,
        'read_given_files': given,
        'open_shadow': _try(lambda: open('/etc/shadow').close()),
        'open_paths': {p: _try(lambda p=p: open(p, 'rb').close())
                       for p in args.get('paths', [])},
        'connect': _try(connect),
        'write_file': _try(write_tmp),
        'rlimit_as': resource.getrlimit(resource.RLIMIT_AS)[0],
        'rlimit_fsize': resource.getrlimit(resource.RLIMIT_FSIZE)[0],
    }
