"""A real privsep daemon, started by oslo.privsep through privsep-helper as
nova-compute starts it: it is locked down (securebits, bounding set,
no_new_privs) and what it runs has no capability after ``exec``.

The programs the daemon runs are observed through wrappers put first on
its PATH: a ``gzip`` (the decompressor of a gzip-compressed managed save)
and a ``setpriv`` (the first program of the parsing sandbox's chain) that
record their own ``/proc/PID/status`` and then run the real program.
"""

import gzip
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

from tests import streamgen

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason='starts a root privsep daemon')

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
FIELDS = ('Uid', 'Gid', 'Groups', 'CapInh', 'CapPrm', 'CapEff', 'CapBnd',
          'CapAmb', 'NoNewPrivs', 'UserNS')

CLIENT = """
import json, os, sys
from oslo_config import cfg
from sparc_nova import conf
from sparc_nova.privsep import checkpoint as privsep_checkpoint

cfg.CONF(['--config-file', sys.argv[1]], project='sparc-test')
out = {}
for name in sys.argv[2:]:
    try:
        privsep_checkpoint.scrub_managed_save(
            path=os.path.join(conf.CONF.sparc.managed_save_dir,
                              name + '.save'),
            instance_name=name, selectors=['pid:42'], exclude_paths=[],
            follow_ipc=False, scrub_free_memory=False)
        out[name] = 'scrubbed'
    except Exception as e:
        out[name] = '%s: %s' % (type(e).__name__, e)
out['daemon'] = []
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        cmd = open('/proc/%s/cmdline' % pid, 'rb').read().split(bytes(1))
        if sys.argv[1].encode() in cmd and b'--privsep_context' in cmd:
            out['daemon'].append(open('/proc/%s/status' % pid).read() +
                                 'UserNS: %s\\n' % os.readlink(
                                     '/proc/%s/ns/user' % pid))
    except OSError:
        pass
print(json.dumps(out))
"""


def wrapper(path, real, record_dir):
    path.write_text(textwrap.dedent('''\
        #!/bin/sh
        { cat /proc/$$/status
          echo "UserNS: $(readlink /proc/$$/ns/user)"; } > %s/%s.$$
        exec %s "$@"
        ''' % (record_dir, path.name, real)))
    os.chmod(path, 0o755)


def status_fields(text):
    fields = dict(line.split(':', 1) for line in text.splitlines()
                  if ':' in line)
    return {k: fields[k].strip() for k in FIELDS if k in fields}


@pytest.fixture
def daemon_setup():
    # The wrappers run as nobody: their directories must be reachable.
    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix='sparc-privsep-',
                                             dir='/var/tmp'))
    os.chmod(tmp_path, 0o755)
    try:
        yield _setup(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _setup(tmp_path):
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    record = tmp_path / 'record'
    record.mkdir()
    os.chmod(record, 0o1777)
    for name in ('gzip', 'setpriv'):
        wrapper(bindir / name, '/usr/bin/' + name, record)
    save_dir = tmp_path / 'save'
    save_dir.mkdir(mode=0o700)
    raw = streamgen.simple_save(ram_pages=32)
    (save_dir / 'instance-00000001.save').write_bytes(raw)
    cut = raw.index(b'QEVM')
    header = bytearray(raw[:cut])
    header[28:32] = (1).to_bytes(4, 'little')        # gzip
    (save_dir / 'instance-00000002.save').write_bytes(
        bytes(header) + gzip.compress(raw[cut:]))
    for p in save_dir.iterdir():
        os.chmod(p, 0o600)
    conf_file = tmp_path / 'sparc.conf'
    helper = os.path.join(os.path.dirname(sys.executable), 'privsep-helper')
    conf_file.write_text(
        '[sparc]\nmanaged_save_dir = %s\njournal_key_file = %s\n'
        '[sparc_privsep]\nhelper_command = %s --config-file %s\n'
        % (save_dir, tmp_path / 'keys' / 'journal.key', helper, conf_file))
    env = dict(os.environ, PYTHONPATH=REPO,
               PATH='%s:%s' % (bindir, os.environ.get('PATH', '/usr/bin')))
    return conf_file, record, env


def recorded(record):
    """{program: [status fields of each run]}"""
    out = {}
    for p in sorted(record.iterdir()):
        out.setdefault(p.name.split('.')[0], []).append(
            status_fields(p.read_text()))
    return out


def test_daemon_children_have_no_capabilities_after_exec(daemon_setup):
    conf_file, record, env = daemon_setup
    res = subprocess.run(
        [sys.executable, '-c', CLIENT, str(conf_file), 'instance-00000001',
         'instance-00000002'], capture_output=True, text=True, env=env,
        timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    # The synthetic guest has no kernel to introspect: both scrubs fail
    # cleanly, after the sandbox and the decompressor ran.
    assert 'PrivilegedScrubError' in out['instance-00000001']
    assert 'PrivilegedScrubError' in out['instance-00000002']

    [daemon] = [status_fields(s) for s in out['daemon']]
    assert daemon['Uid'].split()[0] == '0'
    assert int(daemon['CapEff'], 16) == sum(
        1 << c for c in (1, 2, 3, 5, 6, 7))  # DAC_*, FOWNER, KILL, SETGID,
    #                                          SETUID
    assert int(daemon['CapBnd'], 16) == 0
    assert daemon['NoNewPrivs'] == '1'

    runs = recorded(record)
    assert set(runs) == {'gzip', 'setpriv'}, runs
    assert [st['UserNS'] for st in runs['gzip']] == [daemon['UserNS']]
    for program, statuses in runs.items():
        for st in statuses:
            for cap in ('CapInh', 'CapPrm', 'CapEff', 'CapAmb'):
                assert int(st[cap], 16) == 0, (program, cap, st)
            # A user namespace of its own (the sandbox's, holding its
            # empty network namespace) starts with a full bounding set
            # that confers nothing outside it; in the daemon's it is empty.
            if st['UserNS'] == daemon['UserNS']:
                assert int(st['CapBnd'], 16) == 0, (program, st)
            assert st['Uid'].split() == ['65534'] * 4, (program, st)
            assert st['Gid'].split() == ['65534'] * 4, (program, st)
            assert st['Groups'] == '', (program, st)
            assert st['NoNewPrivs'] == '1', (program, st)


FOLLOW_CLIENT = """
import json, os, sys
from oslo_config import cfg
from sparc_nova import conf
from sparc_nova.privsep import checkpoint as privsep_checkpoint

cfg.CONF(['--config-file', sys.argv[1]], project='sparc-test')
with open(sys.argv[2], 'rb') as f:
    raw = f.read()
out = {}
policy = dict(selectors=['pid:42'], exclude_paths=[], follow_ipc=False,
              scrub_free_memory=False)
for name, saved in (('instance-00000003', True),
                    ('instance-00000004', False)):
    path = privsep_checkpoint.follow_managed_save(instance_name=name,
                                                  **policy)
    # What libvirt does: create the file (0600), write it, mark it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b'LibvirtQemudPart' + raw[16:])
    if saved:
        os.pwrite(fd, b'LibvirtQemudSave', 0)
    os.close(fd)
    try:
        out[name] = privsep_checkpoint.finish_managed_save(
            instance_name=name, saved=saved)
    except Exception as e:
        out[name] = '%s: %s' % (type(e).__name__, e)
    out[name + '-left'] = os.path.exists(path)
print(json.dumps(out))
"""


def test_daemon_follows_a_managed_save_as_it_is_written(daemon_setup,
                                                        tmp_path):
    conf_file, _, env = daemon_setup
    image = tmp_path / 'image'
    image.write_bytes(streamgen.simple_save(ram_pages=32))
    res = subprocess.run(
        [sys.executable, '-c', FOLLOW_CLIENT, str(conf_file), str(image)],
        capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    # The daemon followed and parsed the whole image (the synthetic
    # guest then has no kernel to introspect: the scrub fails cleanly,
    # and the unscrubbed file is the driver's to roll back).
    assert out['instance-00000003'].startswith('PrivilegedScrubError'), out
    assert 'no vmcoreinfo in guest memory' in out['instance-00000003'], out
    assert out['instance-00000003-left'] is True
    # A failed save: the follower stopped, nothing is left.
    assert out['instance-00000004'] == {}
    assert out['instance-00000004-left'] is False
