"""Helpers of the end-to-end scenarios: boot a test guest, read its
console, scan bytes for markers, wait for images.
"""

import re
import time

import openstack

#: A heartbeat line of the guest's boot.sh (see guest_image).
PS_RE = re.compile(r'SPARC-PS beat=(\d+) vault=(\S+) webapp=(\S+)')
FILES_RE = re.compile(r'SPARC-FILES secrets=(\d+) keep=(\d+)')


def console(conn, server) -> str:
    """The server's whole serial console log."""
    return conn.compute.get_server_console_output(server)['output']


def wait_console(conn, server, pattern: re.Pattern, start: int = 0,
                 timeout: float = 180) -> re.Match:
    """The first match of ``pattern`` in the console log from character
    ``start`` on.
    """
    deadline = time.monotonic() + timeout
    while True:
        text = console(conn, server)
        match = pattern.search(text, start)
        if match:
            return match
        if time.monotonic() > deadline:
            raise AssertionError('console of %s: no %r within %ds; it ends '
                                 'with:\n%s' % (server.name, pattern.pattern,
                                                timeout, text[-1500:]))
        time.sleep(2)


def last_beat(conn, server) -> int:
    """The number of the guest's latest heartbeat on the console."""
    beats = [int(m.group(1)) for m in PS_RE.finditer(console(conn, server))]
    assert beats, 'no heartbeat on the console of %s' % server.name
    return max(beats)


def boot(conn, name: str, image, flavor, timeout: float = 300):
    """Boot a server with no network and wait until its guest runs both
    workloads (a heartbeat with a vault and a webapp pid).
    """
    server = conn.compute.create_server(name=name, image_id=image.id,
                                        flavor_id=flavor.id, networks='none')
    server = conn.compute.wait_for_server(server, wait=timeout)
    ready = re.compile(r'SPARC-PS beat=\d+ vault=\d+ webapp=\d+')
    wait_console(conn, server, ready, timeout=timeout)
    return server


def delete(conn, server, timeout: float = 120) -> None:
    """Delete a server and wait until Nova no longer knows it."""
    conn.compute.delete_server(server, ignore_missing=True)
    conn.compute.wait_for_delete(server, wait=timeout)


def count(data: bytes, marker: str) -> int:
    return data.count(marker.encode())


def download(conn, image) -> bytes:
    """The image's bytes exactly as Glance stores them."""
    return conn.image.download_image(image).content


def wait_image_gone(conn, image_id: str, timeout: float = 600) -> str:
    """Wait until Glance no longer has the image (or holds it deleted or
    killed); return its last status.
    """
    deadline = time.monotonic() + timeout
    status = 'missing'
    while time.monotonic() < deadline:
        try:
            image = conn.image.get_image(image_id)
        except openstack.exceptions.NotFoundException:
            return 'missing'
        status = image.status
        if status in ('deleted', 'killed'):
            return status
        time.sleep(3)
    raise AssertionError('image %s still %s after %ds'
                         % (image_id, status, timeout))


def wait_task_done(conn, server, timeout: float = 600):
    """Wait until the server has no task in progress; return it."""
    deadline = time.monotonic() + timeout
    while True:
        server = conn.compute.get_server(server.id)
        if server.task_state is None:
            return server
        if time.monotonic() > deadline:
            raise AssertionError('%s still in task %s after %ds'
                                 % (server.name, server.task_state, timeout))
        time.sleep(2)
