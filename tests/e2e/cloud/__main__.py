"""Bring the test cloud up or down by hand (run from the repository root):

    python -m tests.e2e.cloud up [--stock-driver]
    source /var/tmp/sparc-cloud/openrc; openstack server list
    python -m tests.e2e.cloud down

``run -- CMD...`` brings the cloud up, runs CMD with the openrc variables
set, and always brings it down again (exit status of CMD).
"""

import argparse
import logging
import os
import signal
import subprocess
import sys
import time

from tests.e2e.cloud import catalog
from tests.e2e.cloud import cloud as cloud_mod


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt('signal %d' % signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m tests.e2e.cloud')
    parser.add_argument('action', choices=('up', 'down', 'run'))
    parser.add_argument('--stock-driver', action='store_true',
                        help="Nova's own LibvirtDriver instead of "
                             "SparcLibvirtDriver")
    parser.add_argument('command', nargs='*')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    cloud = cloud_mod.TestCloud(
        driver='stock' if args.stock_driver else 'sparc')
    if args.action == 'down':
        cloud.down()
        return 0
    signal.signal(signal.SIGTERM, _raise_interrupt)
    start = time.monotonic()
    cloud.up()
    print('cloud up in %.0fs %s; logs in %s; credentials: source %s'
          % (time.monotonic() - start, cloud.timings, cloud.conf.logs,
             cloud.conf.path('openrc')), file=sys.stderr)
    if args.action == 'up':
        return 0
    try:
        env = dict(os.environ)
        for line in catalog.openrc(cloud.conf).splitlines():
            key, _, value = line[len('export '):].partition('=')
            env[key] = value
        return subprocess.run(args.command, env=env).returncode
    finally:
        cloud.down()


if __name__ == '__main__':
    sys.exit(main())
