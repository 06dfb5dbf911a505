"""The sparc-nova demo: a real guest with a secret is checkpointed,
scrubbed and restored.

1. Boot a small Linux guest (Debian kernel, busybox, TCG) that runs
   ``vault`` (holds a secret, blocked in a read on a pipe) and ``webapp``
   (holds a marker of its own and must be left alone).
2. ``virsh save`` it: the secret is in the checkpoint.
3. ``sparc checkpoint ps`` lists the guest's processes from the
   checkpoint alone; ``sparc checkpoint scrub --exclude-process vault``
   removes the vault's memory and plants a kill in it;
   ``sparc checkpoint verify`` finds no copy of the secret left.
4. ``virsh restore`` the scrubbed checkpoint: the guest runs on, vault is
   gone, webapp still runs.

Run as root after tools/install.sh (tools/demo.sh does both).
"""

import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.functional.testbed import build  # noqa: E402
from tests.functional.testbed import guest as guest_mod  # noqa: E402

WORKDIR = os.environ.get('SPARC_DEMO_DIR', '/var/tmp/sparc-demo')
SPARC = os.path.join(os.path.dirname(sys.executable), 'sparc')


def step(text: str) -> None:
    print('\n==> %s' % text, flush=True)


def sparc(*args: str, expect: tuple = (0,)) -> subprocess.CompletedProcess:
    print('$ sparc %s' % ' '.join(args), flush=True)
    proc = subprocess.run([SPARC] + list(args), text=True,
                          capture_output=True)
    sys.stdout.write(proc.stdout)
    if proc.returncode not in expect:
        sys.stderr.write(proc.stderr)
        raise SystemExit('demo failed: sparc %s exited %d'
                         % (args[0], proc.returncode))
    return proc


def guest_processes(g) -> dict[str, int]:
    return {p['comm']: p['pid'] for p in g.processes()}


def main() -> int:
    shutil.rmtree(WORKDIR, ignore_errors=True)
    os.makedirs(WORKDIR)
    os.chmod(WORKDIR, 0o755)
    guest_mod.ensure_daemons()

    step('Building and booting a guest (Debian kernel, busybox, TCG)')
    image = build.build_guest(os.path.join(WORKDIR, 'image'))
    secret, control = image.marker(0), image.marker(1)
    g = guest_mod.Guest(image, memory_mib=256, vcpus=2, name='sparc-demo')
    try:
        g.start()
        vault = g.start_workload('hold 0 --threads 2 --pages 64 --wait pipe',
                                 program='vault')
        webapp = g.start_workload('hold 1 --pages 16', program='webapp')
        print('guest is up: vault (pid %d) holds the secret %s, webapp '
              '(pid %d) holds %s' % (vault, secret, webapp, control))

        step('Checkpointing it with virsh save')
        save = os.path.join(WORKDIR, 'vm.save')
        t = time.monotonic()
        g.save(save)
        print('wrote %s (%d MB) in %.1f s' % (
            save, os.path.getsize(save) // 10 ** 6, time.monotonic() - t))

        step('What the checkpoint holds')
        sparc('checkpoint', 'ps', save)
        sparc('checkpoint', 'verify', save, '--marker', secret, expect=(1,))

        step('Scrubbing the vault process out of it')
        scrubbed = os.path.join(WORKDIR, 'vm.scrubbed.save')
        report_path = os.path.join(WORKDIR, 'report.json')
        sparc('checkpoint', 'scrub', save, '--exclude-process', 'vault',
              '--output', scrubbed, '--report', report_path)

        step('Checking that the secret is gone and nothing else was touched')
        sparc('checkpoint', 'verify', scrubbed, '--marker', secret)
        sparc('checkpoint', 'verify', scrubbed, '--marker', control,
              expect=(1,))

        step('Restoring the scrubbed checkpoint')
        beat = g.heartbeat()
        g.restore(scrubbed)
        g.wait_for(r'HEARTBEAT %d\b' % (beat + 3), timeout=120, since=0)
        procs = guest_processes(g)
        alive = 'vault' in procs
        print('guest is running (heartbeat %d); vault %s; webapp %s'
              % (g.heartbeat(), 'STILL RUNNING' if alive else 'is gone',
                 'runs' if 'webapp' in procs else 'IS GONE'))
        oopses = g.oopses()
        with open(report_path) as f:
            report = json.load(f)
        step('Report (full JSON in %s)' % report_path)
        print(json.dumps({key: report.get(key) for key in (
            'kernel', 'selectors', 'frames_scrubbed_by_class',
            'frames_scrubbed', 'frames_refused', 'threads_killed',
            'free_pages', 'verification')}, indent=2))
        ok = not alive and 'webapp' in procs and not oopses
        print('\nRESULT: %s' % ('the checkpoint holds no copy of the '
                                'secret; the guest restored and runs '
                                'without the vault process'
                                if ok else 'FAILED'))
        return 0 if ok else 1
    finally:
        g.destroy()


if __name__ == '__main__':
    sys.exit(main())
