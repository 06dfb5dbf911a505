"""The memory engine's parent side of the sandbox: what it does with the
plan the child returns, and how child failures surface. Nothing is
written unless the plan is valid.
"""

import gzip
import os

import pytest

from sparc_nova.checkpoint import checkpoint as checkpoint_mod
from sparc_nova.checkpoint import stream_follow
from sparc_nova import conf
from sparc_nova.engine import errors
from sparc_nova.engine import listings
from sparc_nova.engine import memory
from sparc_nova.engine import memstats
from sparc_nova.engine import plan_codec
from sparc_nova.engine import report as report_mod
from sparc_nova.engine import sandbox
from sparc_nova.engine import sandboxed_plan
from sparc_nova.engine import session
from tests import streamgen

SECRET = b'TOP-SECRET-PASSPHRASE-0123456789'
PAGE = 4096
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
POLICY = sandbox.SandboxPolicy(memory_bytes=1024 * 1024 * 1024,
                               cpu_seconds=60, timeout=120)
#: The sandbox as the engine's callers hand it over by default.
ON = sandbox.SandboxPolicy()
OFF = sandbox.SandboxPolicy(enabled=False)


@pytest.fixture
def save(tmp_path):
    path = tmp_path / 'vm.save'
    path.write_bytes(streamgen.simple_save(
        ram_pages=64, secret_pfns=(10, 20), secret=SECRET))
    os.chmod(path, 0o600)
    return str(path)


@pytest.fixture
def test_targets(monkeypatch):
    """The real sandbox child may run this suite's targets."""
    monkeypatch.setattr(sandbox, 'ALLOWED_PREFIXES',
                        ('sparc_nova.', 'tests.'))
    monkeypatch.setenv('PYTHONPATH', ROOT)


def plan_doc(path, fills=None, fields=None):
    rep = report_mod.ScrubReport(checkpoint=path, selectors=['vault'])
    rep.processes.append(report_mod.ProcessPlan(
        pid=7, comm='vault', exe=None, reasons=['name'], threads=[7],
        frames={'anon': [10, 20]}, refused=[]))
    rep.timings = {'parse_and_introspect': 0.25, 'plan': 0.05}
    return {'version': plan_codec.VERSION,
            'report': plan_codec.encode_value(rep),
            'fills': [[0, [10, 1, 20, 1]]] if fills is None else fills,
            'fields': [[30 * PAGE + 8, 'ff00', 'task 7 timer', 'timer']]
            if fields is None else fields,
            '_sandbox': {'uid': 65534, 'gid': 65534, 'cap_eff': '0' * 16,
                         'no_new_privs': True, 'seccomp': 'allow-list',
                         'extra': 'dropped'}}


def fake_child(monkeypatch, doc):
    calls = []

    def start(entry, args, files, policy, growing=0, keep=(), prepare=None):
        calls.append((entry, args, files))
        return sandbox.Pending(entry, policy, result=doc)
    monkeypatch.setattr(sandbox, 'start', start)
    return calls


def test_report_carries_memory_figures(save, tmp_path, monkeypatch):
    """The timings block holds the peaks of the scrubbing process and of
    the sandbox child (the figures it reported about itself), in MiB.
    """
    def start(entry, args, files, policy, growing=0, keep=(), prepare=None):
        pending = sandbox.Pending(entry, policy, result=plan_doc(save))
        pending.memory = memstats.ProcessMemory(
            rss=50 << 20, peak_rss=90 << 20, private=40 << 20)
        return pending
    monkeypatch.setattr(sandbox, 'start', start)
    rep = memory.scrub_checkpoint(save, ['vault'], sandbox=ON,
                                  output=str(tmp_path / 'out.save'))
    t = rep.to_dict()['timings']
    assert t['sandbox_peak_rss_mib'] == 90.0
    assert t['sandbox_peak_private_mib'] == 40.0
    # This process: at least the interpreter, private within resident.
    assert 10 < t['peak_private_mib'] <= t['peak_rss_mib'] < 64 * 1024


def test_valid_plan_is_applied_and_verified(save, tmp_path, monkeypatch):
    calls = fake_child(monkeypatch, plan_doc(save))
    out = str(tmp_path / 'out.save')
    rep = memory.scrub_checkpoint(save, ['vault'], output=out, sandbox=ON)
    (entry, args, files), = calls
    assert entry == sandboxed_plan.PLAN_ENTRY
    assert args['selectors'] == ['vault'] and args['path'] == save
    assert files['stream'].name == save
    data = open(out, 'rb').read()
    assert SECRET not in data
    assert rep.verification['result'] == 'ok'
    assert rep.verification['fields_checked'] == 1
    assert [p.pid for p in rep.processes] == [7]
    assert rep.sandbox == {'uid': 65534, 'gid': 65534,
                           'cap_eff': '0' * 16, 'no_new_privs': True,
                           'seccomp': 'allow-list'}
    assert rep.checkpoint == save and rep.output == out
    assert set(rep.timings) >= {'open', 'sandbox', 'parse_and_introspect',
                                'plan', 'rewrite', 'verify', 'total'}
    # The field write was applied to the parent's own copy of frame 30.
    page = bytearray(streamgen.page_of(30))
    page[8:10] = b'\xff\x00'
    with checkpoint_mod.open_checkpoint(out) as ck:
        assert ck.memory.read_page(30) == bytes(page)


def _unchanged(save, before, listing):
    assert open(save, 'rb').read() == before
    assert sorted(os.listdir(os.path.dirname(save))) == listing


HOSTILE = [
    ('frame outside RAM', dict(fills=[[0, [64, 1]]]), 'not a RAM page'),
    ('BIOS frame', dict(fills=[[0, [1 << 20, 1]]]), 'not a RAM page'),
    ('field crossing a page',
     dict(fields=[[31 * PAGE - 1, 'ffff', 'x', 'timer']]), 'cross a page'),
    ('field outside RAM', dict(fields=[[64 * PAGE, 'ff', 'x', 'timer']]),
     'not in a RAM page'),
    ('field into a scrubbed frame',
     dict(fields=[[10 * PAGE, 'ff', 'x', 'timer']]), 'being scrubbed'),
    ('more frames than RAM', dict(fills=[[0, [0, 65]]]), 'more than'),
    ('wrong types', dict(fields=[['0x1000', 'ff', 'x', 'timer']]), 'address'),
]


@pytest.mark.parametrize('in_place', [False, True])
@pytest.mark.parametrize('what,change,message', HOSTILE,
                         ids=[h[0] for h in HOSTILE])
def test_hostile_plan_writes_nothing(save, tmp_path, monkeypatch, what,
                                     change, message, in_place):
    fake_child(monkeypatch, plan_doc(save, **change))
    before = open(save, 'rb').read()
    listing = sorted(os.listdir(tmp_path))
    with pytest.raises(errors.ScrubError) as ei:
        memory.scrub_checkpoint(
            save, ['vault'], sandbox=ON, in_place=in_place,
            output=None if in_place else str(tmp_path / 'out.save'))
    assert ei.value.path == save
    assert 'unusable plan' in str(ei.value) and message in str(ei.value)
    _unchanged(save, before, listing)


def test_child_without_a_plan_writes_nothing(save, tmp_path, monkeypatch):
    fake_child(monkeypatch, {'result': 'ok'})
    before = open(save, 'rb').read()
    with pytest.raises(errors.ScrubError, match='not a plan'):
        memory.scrub_checkpoint(save, ['vault'], sandbox=ON)
    _unchanged(save, before, ['vm.save'])


def test_guest_error_in_the_real_child(save, test_targets):
    # The synthetic guest has no kernel: the child's clear error comes
    # back with its message, naming the file once.
    before = open(save, 'rb').read()
    with pytest.raises(errors.ScrubError) as ei:
        memory.scrub_checkpoint(save, ['vault'], sandbox=POLICY)
    assert str(ei.value).startswith(save + ': ')
    assert str(ei.value).count(save) == 1
    assert 'vmcoreinfo' in str(ei.value)
    assert 'sandbox' not in str(ei.value)
    _unchanged(save, before, ['vm.save'])
    with pytest.raises(errors.ScrubError, match='vmcoreinfo'):
        listings.list_processes(save, sandbox=POLICY)


@pytest.mark.parametrize('target,overrides,message', [
    ('huge_plan', dict(max_result=4096), 'more than the 4096 bytes allowed'),
    ('crash', {}, 'RuntimeError .message not shown'),
    ('burn_cpu', dict(timeout=2), 'did not finish within 2s'),
    ('clear_error', {}, 'guest kernel structure at 0x1000 is bogus'),
])
def test_child_failures_write_nothing(save, test_targets, monkeypatch,
                                      target, overrides, message):
    import dataclasses
    monkeypatch.setattr(sandboxed_plan, 'PLAN_ENTRY',
                        'tests.unit.engine.sandbox_targets:' + target)
    before = open(save, 'rb').read()
    with pytest.raises(errors.ScrubError, match=message) as ei:
        memory.scrub_checkpoint(
            save, ['vault'],
            sandbox=dataclasses.replace(POLICY, **overrides))
    assert ei.value.path == save
    _unchanged(save, before, ['vm.save'])


@pytest.mark.parametrize('doc', [
    {'kernel': {}, 'processes': 'many'},
    {'kernel': [], 'processes': []},
    {'kernel': {}, 'processes': [1]},
    {'kernel': {}, 'edges': {'a': 1}},
])
def test_list_processes_checks_the_child(save, monkeypatch, doc):
    fake_child(monkeypatch, doc)
    with pytest.raises(errors.ScrubError, match='out of shape'):
        listings.list_processes(save, sandbox=ON)


def test_list_processes_through_the_child(save, monkeypatch):
    calls = fake_child(monkeypatch, {'kernel': {'osrelease': '6.1'},
                                     'processes': [{'pid': 1}],
                                     '_sandbox': {}})
    assert listings.list_processes(save, sandbox=ON) == {
        'kernel': {'osrelease': '6.1'}, 'processes': [{'pid': 1}]}
    assert calls[0][0] == listings.LISTING_ENTRY
    assert calls[0][1]['listing'] == 'processes'


def test_list_dependencies_through_the_child(save, monkeypatch):
    doc = {'kernel': {}, 'processes': [], 'objects': [{'kind': 'pipe'}],
           'edges': [{'from': 1, 'to': 2}]}
    calls = fake_child(monkeypatch, dict(doc))
    assert listings.list_dependencies(save, sandbox=ON) == doc
    assert calls[0][1]['listing'] == 'dependencies'


@pytest.mark.parametrize('policy,sandboxed', [
    (None, True), (ON, True), (OFF, False)])
def test_sandbox_follows_the_policy_passed_in(save, monkeypatch, policy,
                                              sandboxed):
    # The engine reads no configuration: [sparc] sandbox_enabled set the
    # other way changes nothing (its callers build the policy from it).
    calls = fake_child(monkeypatch, plan_doc(save))
    conf.CONF.set_override('sandbox_enabled', not sandboxed, 'sparc')
    try:
        if sandboxed:
            memory.scrub_checkpoint(save, ['vault'], dry_run=True,
                                    sandbox=policy)
        else:
            # Introspection runs here and fails on the synthetic guest.
            with pytest.raises(errors.ScrubError, match='vmcoreinfo'):
                memory.scrub_checkpoint(save, ['vault'], dry_run=True,
                                        sandbox=policy)
    finally:
        conf.CONF.clear_override('sandbox_enabled', 'sparc')
    assert len(calls) == int(sandboxed)


def test_child_starts_before_this_process_parses(save, monkeypatch):
    order = []
    calls = fake_child(monkeypatch, plan_doc(save))
    real_start, real_open = sandbox.start, session.open_session

    def start(entry, args, files, policy, growing=0, keep=(), prepare=None):
        # The child is handed the checkpoint file itself.
        assert os.path.samestat(os.fstat(files['stream'].fileno()),
                                os.stat(save))
        order.append('child')
        return real_start(entry, args, files, policy, growing, keep, prepare)

    def parse(*args, **kwargs):
        order.append('parse')
        return real_open(*args, **kwargs)
    monkeypatch.setattr(sandbox, 'start', start)
    monkeypatch.setattr(session, 'open_session', parse)
    memory.scrub_checkpoint(save, ['vault'], dry_run=True, sandbox=ON)
    assert order == ['child', 'parse'] and len(calls) == 1


def test_compressed_image_child_reads_the_decompressed_stream(
        tmp_path, monkeypatch):
    data = streamgen.simple_save(ram_pages=64, secret_pfns=(10, 20),
                                 secret=SECRET)
    start = data.index(b'QEVM')
    header = bytearray(data[:start])
    header[28:32] = (1).to_bytes(4, 'little')     # gzip
    path = tmp_path / 'vm.save'
    path.write_bytes(bytes(header) + gzip.compress(data[start:]))
    seen = []
    fake_child(monkeypatch, plan_doc(str(path)))
    real_start = sandbox.start

    def start(entry, args, files, policy, growing=0, keep=(), prepare=None):
        stream = files['stream']
        stream.seek(0)
        seen.append(stream.read(4))
        return real_start(entry, args, files, policy, growing, keep, prepare)
    monkeypatch.setattr(sandbox, 'start', start)
    memory.scrub_checkpoint(str(path), ['vault'], dry_run=True, sandbox=ON)
    assert seen == [b'QEVM']


def test_image_being_written_is_followed_by_both(tmp_path, monkeypatch):
    """With ``follow``, the child starts while libvirt still writes the
    image, is told to follow it too (and given address space for it),
    and the scrub completes once the image is marked complete.
    """
    data = streamgen.simple_save(ram_pages=64, secret_pfns=(10, 20),
                                 secret=SECRET)
    path, writer = streamgen.start_writing(str(tmp_path / 'vm.save'), data,
                                           chunk=2000, pause=0.002)
    started = []

    def start(entry, args, files, policy, growing=0, keep=(), prepare=None):
        started.append((writer.marked_at, args.get('follow_seconds'),
                        growing))
        return sandbox.Pending(entry, policy, result=plan_doc(path))
    monkeypatch.setattr(sandbox, 'start', start)
    out = str(tmp_path / 'out.save')
    rep = memory.scrub_checkpoint(
        path, ['vault'], output=out, sandbox=ON,
        follow=stream_follow.Follow.within(60, writer.done.is_set))
    (marked, seconds, growing), = started
    assert marked is None and 0 < seconds <= 60
    assert growing >= 64 * (PAGE + 8)
    assert writer.marked_at is not None
    assert rep.verification['result'] == 'ok'
    assert SECRET not in open(out, 'rb').read()
