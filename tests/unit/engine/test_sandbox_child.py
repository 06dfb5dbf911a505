"""The sandbox child's side of the protocol: what it accepts as its
request and its files.
"""

import os
import socket
import subprocess
import sys

from sparc_nova.engine import sandbox
from sparc_nova.engine import sandbox_child


def test_child_takes_only_the_descriptors_its_request_names():
    """The child uses its descriptors only when the request names each of
    them once, by its position among those received.
    """
    given = sandbox_child._given_files
    assert given({'fds': {'a': 0, 'b': 1}}, [7, 9]) == {'a': 7, 'b': 9}
    assert given({'fds': {}}, []) == {}
    for named, fds in (({'a': 0}, [7, 9]), ({'a': 0, 'b': 0}, [7, 9]),
                       ({'a': 1}, [7]), ({'a': '0'}, [7]),
                       ({'a': True}, [7]), ([0], [7]), (None, [])):
        assert given({'fds': named}, fds) is None


def test_child_refuses_a_request_it_cannot_read(tmp_path):
    """A child whose request is missing, malformed or too large exits
    without running anything.
    """
    def child(payload: bytes, fds=()) -> int:
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen(
            [sys.executable, '-m', sandbox.CHILD_MODULE],
            stdin=theirs.fileno(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=dict(os.environ, **sandbox.CHILD_ENV))
        theirs.close()
        try:
            socket.send_fds(ours, [payload[:4096]], list(fds))
            ours.sendall(payload[4096:])
        except OSError:
            pass
        ours.close()
        out, _ = proc.communicate(timeout=60)
        assert out == b''
        return proc.returncode

    assert child(b'') == 2
    assert child(b'not json') == 2
    assert child(b'[1, 2]') == 2
    assert child(b' ' * (sandbox_child.MAX_REQUEST + 10)) == 2
    f = tmp_path / 'f'
    f.write_text('x')
    with open(f, 'rb') as fh:
        assert child(b'{"fds": {}}', [fh.fileno()]) == 2
