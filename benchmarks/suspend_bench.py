"""What sparc-nova adds to Nova's suspend and resume, as a user sees it.

Brings the test cloud up (``tests/e2e/cloud``, on
``SPARC_CLOUD_PORT_BASE`` / ``SPARC_CLOUD_STATE`` / ``SPARC_CLOUD_LOGS``),
boots one server of ``--ram`` MiB with a policy
(``sparc:exclude_processes=vault``) whose control process (``webapp``,
not excluded) holds ``--hold`` MiB of anonymous memory (the excluded
process dies at the first resume from a scrubbed save: memory it held
would be gone from every later round), then for ``--rounds`` rounds,
alternating which comes first, runs with each driver in turn
(nova-compute restarted with ``compute_driver`` set to
``sparc_libvirt.SparcLibvirtDriver`` or to Nova's own
``libvirt.LibvirtDriver``, the same guest, the same cloud):

* ``openstack server suspend`` until the server is SUSPENDED, timed from
  the start of the CLI (what a user waits for);
* ``openstack server resume`` until it is ACTIVE.

Prints a table of medians and ratios (sparc / stock) and writes JSON
with every round, including, for the sparc driver, how the scrub
overlapped libvirt's managedSave (from nova-compute's log).

    python benchmarks/suspend_bench.py --ram 2048 --hold 1024 \\
        --rounds 3 --out suspend.json

Needs the test cloud's virtualenv (``bash tests/e2e/cloud/install.sh``).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.e2e.cloud import catalog  # noqa: E402
from tests.e2e.cloud import cloud as cloud_mod  # noqa: E402
from tests.e2e.cloud import nova as cloud_nova  # noqa: E402
from tests.e2e import guest_image  # noqa: E402
from tests.e2e import servers  # noqa: E402

DRIVERS = {'sparc': 'sparc_libvirt.SparcLibvirtDriver',
           'stock': 'libvirt.LibvirtDriver'}
OPENSTACK = '/opt/sparc/cloud-venv/bin/openstack'
#: Seconds between two looks at the server's status.
POLL_SECONDS = 0.2
OVERLAP_RE = re.compile(
    r'scrubbed while libvirt saved it: complete after (\S+) s of a (\S+) s '
    r'save, scrub overlapped the save: (\S+), ended (\S+) s after')
#: The wall time of the driver's calls around managedSave, s.
CALLS_RE = re.compile(
    r'follow call (\S+) s, managedSave (\S+) s, verdict call (\S+) s, '
    r'in place: (\S+)')
DRIVER_RE = re.compile(
    r'Suspend with a scrubbed memory image: (\S+) s in the driver, of '
    r'which (\S+) s recording the managed save and (\S+) s clearing')


def set_driver(cloud, driver: str) -> None:
    """Restart nova-compute with ``driver`` ('sparc' or 'stock'); return
    once the compute service reports up again.
    """
    path = cloud_nova.compute_conf_file(cloud.conf)
    with open(path) as f:
        text = f.read()
    text, n = re.subn(r'(?m)^compute_driver\s*=.*$',
                      'compute_driver = %s' % DRIVERS[driver], text)
    if n != 1:
        raise RuntimeError('%s: no single compute_driver line' % path)
    with open(path, 'w') as f:
        f.write(text)
    sup = cloud.sup
    sup.stop('nova-compute')
    log = sup.log_path('nova-compute')
    start_at = os.path.getsize(log)
    # As the cloud starts it: as the nova user, privsep through sudo and
    # nova-rootwrap.
    cloud_nova.start_compute(cloud.conf, sup)
    sup.wait_until('nova-compute', lambda: _logged(
        log, start_at, 'Compute node record created|Updating compute '
        'node|Final resource view'), 'ready', timeout=180)


def _logged(path: str, offset: int, pattern: str) -> bool:
    with open(path, errors='replace') as f:
        f.seek(offset)
        return re.search(pattern, f.read()) is not None


def cli(env: dict, *args: str) -> None:
    subprocess.run([OPENSTACK, *args], env=env, check=True,
                   capture_output=True)


def timed_action(conn, env: dict, server, action: str, status: str,
                 timeout: float = 900) -> float:
    """Seconds from the start of ``openstack server ACTION`` until the
    server has ``status`` and no task state.
    """
    t0 = time.monotonic()
    cli(env, 'server', action, server.id)
    while True:
        s = conn.compute.get_server(server.id)
        if s.status == status and not s.task_state:
            return time.monotonic() - t0
        if s.status == 'ERROR':
            raise RuntimeError('server went to ERROR during %s' % action)
        if time.monotonic() - t0 > timeout:
            raise RuntimeError('%s did not finish in %ds'
                               % (action, timeout))
        time.sleep(POLL_SECONDS)


def overlap_since(log: str, offset: int) -> dict:
    with open(log, errors='replace') as f:
        f.seek(offset)
        text = f.read()
    found = OVERLAP_RE.findall(text)
    if not found:
        return {}
    complete, save, overlapped, after = found[-1]
    overlap = {'image_complete_after': complete, 'save': save,
               'overlapped': overlapped, 'after_save': after}
    calls = CALLS_RE.findall(text)
    if calls:
        overlap.update(zip(('follow_call', 'managed_save', 'verdict_call',
                            'in_place'), calls[-1]))
    driver = DRIVER_RE.findall(text)
    if driver:
        overlap.update(zip(('in_driver', 'record', 'clear_record'),
                           driver[-1]))
    return overlap


def median(values):
    return round(statistics.median(values), 2) if values else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--ram', type=int, default=2048, help='MiB')
    parser.add_argument('--hold', type=int, default=1024,
                        help='MiB held by the control process')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--out')
    parser.add_argument(
        '--in-place', action='store_true',
        help='also run the sparc driver with the managed-save directory '
             'made root-owned (0755) for its rounds only ("sparc-in-place"), '
             'so that the scrub patches the image in place through its '
             'journal instead of rewriting it: measures what the in-place '
             'patch saves, in the same run')
    args = parser.parse_args(argv)

    cloud = cloud_mod.TestCloud(driver='sparc')
    t = time.monotonic()
    cloud.up()
    print('cloud up in %.0f s' % (time.monotonic() - t), file=sys.stderr)
    save_dir = cloud_nova.managed_save_dir(cloud.conf)
    qemu_owner = os.stat(save_dir)
    variants = ['sparc', 'stock'] + (['sparc-in-place'] if args.in_place
                                     else [])
    rows = []
    try:
        conn = cloud.connect()
        env = dict(os.environ)
        for line in catalog.openrc(cloud.conf).splitlines():
            key, _, value = line[len('export '):].partition('=')
            env[key] = value
        guest = guest_image.build_guest(cloud.conf.path('guest'),
                                        webapp_pages=args.hold * 256)
        kernel = conn.image.create_image(
            name='bench-kernel', filename=guest.kernel, disk_format='aki',
            container_format='aki', wait=True)
        ramdisk = conn.image.create_image(
            name='bench-ramdisk', filename=guest.ramdisk, disk_format='ari',
            container_format='ari', wait=True)
        root = conn.image.create_image(
            name='bench-root', filename=guest.root, disk_format='ami',
            container_format='ami', wait=True, kernel_id=kernel.id,
            ramdisk_id=ramdisk.id,
            os_command_line=guest_image.KERNEL_CMDLINE)
        flavor = conn.compute.create_flavor(name='bench', ram=args.ram,
                                            vcpus=1, disk=1)
        server = servers.boot(conn, 'bench', root, flavor, timeout=600)
        conn.compute.set_server_metadata(
            server, **{'sparc:exclude_processes': 'vault'})
        log = cloud.sup.log_path('nova-compute')
        for r in range(args.rounds):
            # Each round starts with another variant.
            order = variants[r % len(variants):] + \
                variants[:r % len(variants)]
            for variant in order:
                driver = variant.split('-')[0]
                if variant == 'sparc-in-place':
                    os.chown(save_dir, 0, 0)
                else:
                    os.chown(save_dir, qemu_owner.st_uid, qemu_owner.st_gid)
                set_driver(cloud, driver)
                offset = os.path.getsize(log)
                suspend = timed_action(conn, env, server, 'suspend',
                                       'SUSPENDED')
                overlap = overlap_since(log, offset) \
                    if driver == 'sparc' else {}
                resume = timed_action(conn, env, server, 'resume',
                                      'ACTIVE')
                row = {'round': r, 'driver': variant,
                       'suspend': round(suspend, 3),
                       'resume': round(resume, 3), 'overlap': overlap}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
                # Let the resumed guest settle (its heartbeat runs).
                time.sleep(5)
    finally:
        cloud.down()
    table = {}
    for op in ('suspend', 'resume'):
        stock = median([r[op] for r in rows if r['driver'] == 'stock'])
        table[op] = {'stock': stock}
        for variant in variants[:1] + variants[2:]:
            value = median([r[op] for r in rows if r['driver'] == variant])
            table[op][variant] = value
            table[op][variant + ' / stock'] = \
                round(value / stock, 3) if value and stock else None
    columns = list(table['suspend'])
    print('| %d MiB guest, %d MiB held (median s) | %s |'
          % (args.ram, args.hold, ' | '.join(columns)))
    print('|---' * (len(columns) + 1) + '|')
    for op, t in table.items():
        print('| %s | %s |' % (op, ' | '.join(str(t[c]) for c in columns)))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({'ram_mib': args.ram, 'hold_mib': args.hold,
                       'rounds': rows, 'medians': table}, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
