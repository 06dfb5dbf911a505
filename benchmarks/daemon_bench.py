"""What the privileged daemon's spare sandbox child saves a scrub.

The Nova driver scrubs a managed save through its privileged daemon
(:mod:`sparc_nova.privsep.checkpoint`); with ``[sparc] sandbox_spare``
the daemon keeps a sandbox child started ahead for the next scrub, so
that the scrubs after the first skip the child's start-up. This script
measures that on a real save image (``virsh save`` of a guest; the
images ``memory_bench.py --keep`` leaves), the way nova-compute calls
the daemon:

* each round starts a client process that starts a real daemon through
  ``privsep-helper`` (as nova-compute does), with the option on or off
  (rounds alternate which comes first);
* the client scrubs a fresh copy of the image twice through
  ``scrub_managed_save`` (in place, through the journal, as the driver
  does); the first scrub of a daemon starts its child either way, the
  second is the one measured: the wall time of the privileged call, and
  the report's ``sandbox`` (what waiting for the child adds after the
  daemon's own parse) and ``total``.

Prints the medians and the ratio (spare / no spare), and writes JSON
with every round:

    python benchmarks/daemon_bench.py --image mem-4096.save \\
        --selectors pid:100,pid:103,pid:107 --rounds 5 --out daemon.json

Must run as root (the daemon is root's, as nova-compute's is).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CLIENT = """
import json, os, shutil, sys, time
from oslo_config import cfg
from sparc_nova import conf
from sparc_nova.privsep import checkpoint as privsep_checkpoint

cfg.CONF(['--config-file', sys.argv[1]], project='sparc-bench')
image, selectors = sys.argv[2], sys.argv[3].split(',')
name = 'instance-0000000b'
path = os.path.join(conf.CONF.sparc.managed_save_dir, name + '.save')
out = []
for _ in range(2):
    shutil.copyfile(image, path)
    os.chmod(path, 0o600)
    os.sync()
    time.sleep(1)
    started = time.monotonic()
    result = privsep_checkpoint.scrub_managed_save(
        path=path, instance_name=name, selectors=selectors,
        exclude_paths=[], follow_ipc=True, scrub_free_memory=True)
    wall = time.monotonic() - started
    out.append({'call': round(wall, 3),
                'timings': result['report'].get('timings', {})})
os.unlink(path)
print(json.dumps(out))
"""


def one_round(image: str, selectors: str, spare: bool, tmp: str) -> dict:
    """Start a daemon with ``sandbox_spare`` = ``spare``, scrub twice;
    the second scrub's figures.
    """
    save_dir = os.path.join(tmp, 'save')
    os.makedirs(save_dir, mode=0o700, exist_ok=True)
    conf_file = os.path.join(tmp, 'sparc-%s.conf' % spare)
    helper = os.path.join(os.path.dirname(sys.executable), 'privsep-helper')
    with open(conf_file, 'w') as f:
        f.write('[sparc]\nmanaged_save_dir = %s\njournal_key_file = %s\n'
                'sandbox_spare = %s\n'
                '[sparc_privsep]\nhelper_command = %s --config-file %s\n'
                % (save_dir, os.path.join(tmp, 'keys', 'journal.key'),
                   spare, helper, conf_file))
    env = dict(os.environ, PYTHONPATH=ROOT)
    res = subprocess.run([sys.executable, '-c', CLIENT, conf_file, image,
                          selectors], capture_output=True, text=True,
                         env=env, timeout=900)
    if res.returncode:
        raise SystemExit(res.stderr[-3000:])
    first, second = json.loads(res.stdout)
    return {'spare': spare, 'first_call': first['call'],
            'call': second['call'],
            'sandbox': second['timings'].get('sandbox'),
            'total': second['timings'].get('total')}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--image', required=True,
                   help='A libvirt save image (virsh save).')
    p.add_argument('--selectors', required=True,
                   help='Comma-separated process selectors to exclude.')
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--out', default=None, help='Write results as JSON.')
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit('run as root: the daemon is root\'s')
    tmp = tempfile.mkdtemp(prefix='sparc-daemon-bench-', dir='/var/tmp')
    rows = []
    try:
        for i in range(args.rounds):
            for spare in ((True, False) if i % 2 == 0 else (False, True)):
                row = one_round(os.path.abspath(args.image),
                                args.selectors, spare, tmp)
                row['round'] = i
                rows.append(row)
                print('round %d  spare %-5s  call %.2f s  sandbox %.2f s  '
                      'total %.2f s  (first call %.2f s)'
                      % (i, spare, row['call'], row['sandbox'] or 0,
                         row['total'] or 0, row['first_call']),
                      flush=True)
    finally:
        shutil.rmtree(tmp)
    med = {}
    for spare in (True, False):
        mine = [r for r in rows if r['spare'] is spare]
        med[spare] = {k: statistics.median(r[k] for r in mine)
                      for k in ('call', 'sandbox', 'total')}
    print('median         call     sandbox   total')
    for spare in (True, False):
        m = med[spare]
        print('spare %-5s  %6.2f s  %6.2f s  %6.2f s'
              % (spare, m['call'], m['sandbox'], m['total']))
    print('ratio (spare / none): call x%.3f, sandbox x%.3f'
          % (med[True]['call'] / med[False]['call'],
             med[True]['sandbox'] / med[False]['sandbox']))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({'rows': rows, 'medians': {str(k): v for k, v in
                                                 med.items()}}, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
