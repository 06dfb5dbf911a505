"""IPC exclusion on a real guest (Debian 6.1, 256 MiB, pc): ``deps``,
``scrub`` with and without ``--follow-ipc``, ``verify`` and ``virsh
restore``, against the guest's own view (see ipc_scenario).
"""

import json
import os
import re

import pytest

from tests.functional.engine import ipc_scenario as isc
from tests.functional.engine import scenario as scen
from tests.functional.testbed import build

pytestmark = pytest.mark.slow

#: Peers reading from a kernel buffer the writer left a copy in (pipe,
#: socket queues); the pty terminal is checked on its own.
BUFFER_READERS = (('pipe', 'reader'), ('ustream', 'reader'),
                  ('udgram', 'reader'))


@pytest.fixture(scope='module')
def sc(make_guest, guest_image, module_dir):
    return isc.build(make_guest, guest_image, module_dir)


@pytest.fixture(scope='module')
def deps(sc):
    out = scen.sparc('checkpoint', 'deps', sc.save_path, '--format', 'json',
                     check=0)
    return json.loads(out.stdout)


@pytest.fixture(scope='module')
def followed(sc):
    """Scrubbed with the default --follow-ipc: (path, report)."""
    return isc.scrub(sc, 'follow')


@pytest.fixture(scope='module')
def unfollowed(sc):
    """Scrubbed with --no-follow-ipc: (path, report)."""
    return isc.scrub(sc, 'nofollow', '--no-follow-ipc')


def verify(path, markers) -> dict:
    """``sparc checkpoint verify``: ``{marker: row}`` (the rows come in
    the order of the markers; verify names them ``#1``, ``#2``...).
    """
    args = ['checkpoint', 'verify', path, '--format', 'json']
    for m in markers:
        args += ['--marker', m]
    res = scen.sparc(*args)
    assert res.returncode in (0, 1), res.stderr[-2000:]
    rows = json.loads(res.stdout)['markers']
    assert len(rows) == len(markers)
    return dict(zip(markers, rows))


def guest_links(sc, pid) -> set:
    """(fd, link) of the pipes and sockets the guest listed for pid."""
    return {(fd, link) for fd, link in sc.fds[pid].items()
            if link.startswith(('pipe:[', 'socket:['))}


def edge_set(edges) -> set:
    return {(e['from'], e['to'], e['kind']) for e in edges}


def test_markers_present_before(sc):
    rows = verify(sc.save_path, [sc.marker(n) for n in
                                 list(isc.MARKERS) + ['control']])
    for name in list(isc.MARKERS) + ['control']:
        assert rows[sc.marker(name)]['in_memory'] > 0, name


def test_deps_fds_match_guest(sc, deps):
    procs = {p['pid']: p for p in deps['processes']}
    for pid in sc.workload_pids():
        mine = {(f['fd'], f['object']) for f in procs[pid]['fds']
                if f['kind'] in ('pipe', 'socket')}
        assert mine == guest_links(sc, pid), (pid, procs[pid]['fds'],
                                              sc.fds[pid])
    # The guest's view, for the record: every scenario has its channel.
    assert guest_links(sc, sc.pid('pipe', 'sink'))
    assert any(link.startswith('/memfd:ipc-secret')
               for link in sc.fds[sc.pid('memfd', 'reader')].values())


def test_deps_edges(sc, deps):
    edges = edge_set(deps['edges'])
    want = set()
    for (name, role), (kind, src) in isc.PEER_EDGES.items():
        want.add((sc.pid(name, src), sc.pid(name, role), kind))
    for name, kind in (('ustream', 'unix-stream'), ('udgram', 'unix-dgram'),
                       ('memfd', 'shared-memory')):
        want.add((sc.pid(name, 'reader'), sc.pid(name, 'writer'), kind))
    want.add((sc.pid('pty', 'terminal'), sc.pid('pty', 'shell'), 'tty'))
    assert want <= edges, sorted(want - edges)
    # The writer -> reader pipe edge is the pipe the guest saw.
    writer = sc.pid('pipe', 'writer')
    (link,) = [k for _, k in guest_links(sc, writer)]
    assert {'from': writer, 'to': sc.pid('pipe', 'reader'), 'kind': 'pipe',
            'object': link} in deps['edges']
    # Nothing links the control, nor two different scenarios.
    scenario_of = {pid: name for name, roles in sc.roles.items()
                   for pid in roles.values()}
    for e in deps['edges']:
        assert sc.control not in (e['from'], e['to']), e
        if e['from'] in scenario_of and e['to'] in scenario_of:
            assert scenario_of[e['from']] == scenario_of[e['to']], e


def test_deps_queued_bytes(sc, deps):
    """The unread copy the writers left is queued in the kernel."""
    objects = {o['object']: o for o in deps['objects']}
    writer = sc.pid('pipe', 'writer')
    (link,) = [k for _, k in guest_links(sc, writer)]
    assert objects[link]['queued_bytes'] == build.MARKER_LEN
    for name in ('ustream', 'udgram'):
        pair = [k for pid in (sc.pid(name, 'writer'), sc.pid(name, 'reader'))
                for _, k in guest_links(sc, pid)]
        assert sum(objects[k]['queued_bytes'] for k in pair) == \
            build.MARKER_LEN, [objects[k] for k in pair]


def _dot_tokens(text):
    rx = re.compile(r'\s+|//[^\n]*|/\*.*?\*/|#[^\n]*|(->|--|[{}\[\];,=:])|'
                    r'("(?:[^"\\]|\\.)*")|([A-Za-z0-9_.\-]+)', re.S)
    pos = 0
    while pos < len(text):
        m = rx.match(text, pos)
        assert m, 'unparseable DOT at %r' % text[pos:pos + 40]
        pos = m.end()
        tok = m.group(1) or m.group(2) or m.group(3)
        if tok:
            yield tok


def parse_dot(text) -> tuple[str, set, list]:
    """A minimal DOT reader: (graph kind, the ids and attribute values
    of its statements, [(from, to)] of its edges). Statements are node,
    edge, attribute and subgraph ones; ports and edge chains in one
    statement are not needed here.
    """
    toks = list(_dot_tokens(text))
    i = 0
    if toks[i] == 'strict':
        i += 1
    kind = toks[i]
    i += 1
    if toks[i] != '{':
        i += 1
    assert toks[i] == '{', toks[:5]
    i += 1
    names, edges = set(), []
    stmt = []
    depth = braces = 0
    for tok in toks[i:]:
        if tok == '[':
            depth += 1
        elif tok == ']':
            depth -= 1
        elif tok == '{':
            braces += 1
        elif tok == '}':
            braces -= 1
        if depth == 0 and tok in (';', '{', '}'):
            if '->' in stmt:
                ids = [t for t in stmt[:stmt.index('[')] if t != '->'] \
                    if '[' in stmt else [t for t in stmt if t != '->']
                ids = [t.strip('"') for t in ids]
                edges.extend(zip(ids, ids[1:]))
            names.update(t.strip('"') for t in stmt
                         if t not in ('->', '[', ']', '=', ',', ';'))
            stmt = []
            continue
        stmt.append(tok)
    assert depth == 0 and braces == -1 and toks[-1] == '}', toks[-5:]
    return kind, names, edges


def test_deps_dot(sc):
    out = scen.sparc('checkpoint', 'deps', sc.save_path, '--format', 'dot',
                     check=0)
    kind, names, edges = parse_dot(out.stdout)
    assert kind == 'digraph'
    assert edges
    words = {w for n in names for w in re.findall(r'\d+', n)}
    for pid in sc.named() + sc.peers():
        assert str(pid) in words, pid


def test_follow_no_marker_left(sc, followed):
    out, report = followed
    rows = verify(out, [sc.marker(n) for n in isc.MARKERS])
    left = {n: rows[sc.marker(n)] for n in isc.MARKERS
            if rows[sc.marker(n)]['in_memory'] or
            rows[sc.marker(n)]['in_file']}
    assert not left, left
    assert report['verification']['result'] == 'ok'


def test_control_marker_kept(sc, followed, unfollowed):
    before = verify(sc.save_path, [sc.marker('control')])
    for out, _ in (followed, unfollowed):
        row = verify(out, [sc.marker('control')])[sc.marker('control')]
        assert row['in_memory'] == \
            before[sc.marker('control')]['in_memory'] > 0


def test_follow_report_pulls_in_peers(sc, followed):
    _, report = followed
    selected = {p['pid']: p for p in report['processes']}
    assert set(selected) == set(sc.named() + sc.peers())
    assert report['ipc']['follow_ipc'] is True
    pulled = {p['pid']: p for p in report['ipc']['pulled_in']}
    assert set(pulled) == set(sc.peers())
    for (name, role), (kind, src) in isc.PEER_EDGES.items():
        pid = sc.pid(name, role)
        edge = pulled[pid]['edge']
        assert (edge['from'], edge['to'], edge['kind']) == \
            (sc.pid(name, src), pid, kind), (name, role, edge)
        reasons = [r for r in selected[pid]['selected_because']
                   if r.startswith('ipc:')]
        assert reasons, selected[pid]['selected_because']
        assert any(kind in r and re.search(r'\b%d\b' % sc.pid(name, src), r)
                   for r in reasons), reasons
    for pid in sc.named():
        assert not [r for r in selected[pid]['selected_because']
                    if r.startswith('ipc:')], selected[pid]


def _assert_buffers_scrubbed(sc, report):
    scrubbed = report['ipc']['scrubbed']
    assert scrubbed['pipe']['objects'] >= 1
    assert scrubbed['pipe']['bytes'] >= build.MARKER_LEN
    assert scrubbed['unix-socket']['bytes'] >= 2 * build.MARKER_LEN
    ours = {k for pid in sc.workload_pids() for _, k in guest_links(sc, pid)}
    assert not [n for n in report['ipc']['not_scrubbed']
                if n['object'] in ours], report['ipc']['not_scrubbed']


def test_follow_scrubs_ipc_objects(sc, followed):
    _, report = followed
    _assert_buffers_scrubbed(sc, report)
    scrubbed = report['ipc']['scrubbed']
    for kind in ('sysv-shm', 'memfd-shmem', 'tty'):
        assert scrubbed[kind]['objects'] >= 1, (kind, scrubbed)
    # Zeroed buffers are counted, never listed with their bytes.
    assert report['rewrite']['byte_ranges_zeroed'] > 0, report['rewrite']
    assert not [f for f in report['patched_fields'] if 'buffer' in
                f['what'] or 'free object' in f['what']]


def test_nofollow_report(sc, unfollowed):
    _, report = unfollowed
    assert {p['pid'] for p in report['processes']} == set(sc.named())
    assert report['ipc']['follow_ipc'] is False
    assert report['ipc']['pulled_in'] == []
    at_risk = {p['pid']: p['edge'] for p in report['ipc']['at_risk']}
    direct = {(n, r): e for (n, r), e in isc.PEER_EDGES.items()
              if e[1] == isc.NAMED_ROLE[n]}
    assert set(at_risk) >= {sc.pid(n, r) for n, r in direct}
    assert set(at_risk) <= set(sc.peers())
    for (name, role), (kind, src) in direct.items():
        edge = at_risk[sc.pid(name, role)]
        assert (edge['from'], edge['kind']) == (sc.pid(name, src), kind), \
            (name, role, edge)
    _assert_buffers_scrubbed(sc, report)


def test_restore_follow(sc, followed):
    out, _ = followed
    gone = sc.named() + sc.peers()
    alive = isc.restore(sc, out, gone)
    assert not alive & set(gone)


@pytest.fixture(scope='module')
def restored_unfollowed(sc, unfollowed):
    """The --no-follow-ipc checkpoint restored; every peer then read once
    from its channel: ``{pid: read}`` (see Guest.ipc_reads).
    """
    out, _ = unfollowed
    alive = isc.restore(sc, out, sc.named())
    assert set(sc.peers()) <= alive, sorted(set(sc.peers()) - alive)
    return sc.guest.ipc_reads(sc.peers())


def test_restore_nofollow_peers_run(sc, restored_unfollowed):
    """The peers run on, holding the same descriptors as before the save;
    the named processes are gone.
    """
    now = sc.guest.open_files(sc.peers() + sc.named())
    for pid in sc.peers():
        assert now[pid] == sc.fds[pid], (pid, now[pid], sc.fds[pid])
    for pid in sc.named():
        assert now[pid] is None, (pid, now[pid])
    assert sc.guest.oopses() == []


@pytest.mark.parametrize('name,role', BUFFER_READERS)
def test_nofollow_unread_copy_gone(sc, restored_unfollowed, name, role):
    """What the reader finds pending after restore is not the marker the
    writer left unread in the pipe / socket queue.
    """
    got = restored_unfollowed[sc.pid(name, role)]
    assert (got['scenario'], got['role']) == (name, role)
    assert not got['found'], got
    assert got['data'] != sc.marker(name).encode(), got


def test_nofollow_tty_echo_gone(sc, restored_unfollowed):
    """The terminal's pending input on the master (the shell's echo of the
    typed line) no longer holds the marker.
    """
    got = restored_unfollowed[sc.pid('pty', 'terminal')]
    assert not got['found'], got


def test_deps_lists_every_fd(sc, deps):
    """Every descriptor of the workload processes is listed, and the
    objects the guest names by path (tty, memfd) carry that path.
    """
    procs = {p['pid']: p for p in deps['processes']}
    for pid in sc.workload_pids():
        mine = {f['fd']: f for f in procs[pid]['fds']}
        assert set(mine) == set(sc.fds[pid]), (pid, mine, sc.fds[pid])
        for fd, link in sc.fds[pid].items():
            if mine[fd]['kind'] in ('pipe', 'socket', 'tty', 'memfd'):
                assert mine[fd]['object'] == link, (pid, mine[fd], link)
    terminal = procs[sc.pid('pty', 'terminal')]['fds']
    assert [f for f in terminal if f['kind'] == 'tty' and
            f['object'] == '/dev/ptmx']
    memfd = procs[sc.pid('memfd', 'writer')]['fds']
    assert [f for f in memfd if f['kind'] == 'memfd']


def test_deps_sysv_object(sc, deps):
    """The SysV segment is one object attached by writer and reader, named
    as the contract says (``sysv-shm:[key K id N]``).
    """
    shm = [o for o in deps['objects'] if o['kind'] == 'sysv-shm']
    pair = {sc.pid('sysv', 'writer'), sc.pid('sysv', 'reader')}
    ours = [o for o in shm if pair <= set(o.get('attached', ()))]
    assert len(ours) == 1, shm
    assert re.fullmatch(r'sysv-shm:\[key 0x0+ id \d+\]', ours[0]['object']), \
        ours[0]


@pytest.fixture(scope='module')
def sealed_ipc(sc):
    """The save sealed with --follow-ipc (the default) into a new file,
    then unsealed into another: ``(verify rows of the sealed copy, the
    sealed-pages file's bytes, the unsealed path)``.
    """
    key = os.path.join(sc.workdir, 'seal.key')
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'wb') as f:
        f.write(os.urandom(32))
    sealed = os.path.join(sc.workdir, 'sealed.save')
    scen.sparc('checkpoint', 'seal', sc.save_path, '--output', sealed,
               '--key-file', key, *sc.selectors(), check=0)
    rows = verify(sealed, [sc.marker(n) for n in
                           list(isc.MARKERS) + ['control']])
    with open(sealed + '.sparc-sealed', 'rb') as f:
        sealed_bytes = f.read()
    unsealed = os.path.join(sc.workdir, 'unsealed.save')
    scen.sparc('checkpoint', 'unseal', sealed, '--key-file', key,
               '--output', unsealed, check=0)
    return rows, sealed_bytes, unsealed


def test_seal_leaves_no_marker_at_rest(sc, sealed_ipc):
    """Sealed with IPC followed, neither the checkpoint nor the sealed
    pages hold any scenario's marker in the clear (the buffers in flight
    included); the control's marker is there.
    """
    rows, sealed_bytes, _ = sealed_ipc
    left = {n: rows[sc.marker(n)] for n in isc.MARKERS
            if rows[sc.marker(n)]['in_memory'] or
            rows[sc.marker(n)]['in_file']}
    assert not left, left
    assert rows[sc.marker('control')]['in_memory'] > 0
    for name in isc.MARKERS:
        assert sc.marker(name).encode() not in sealed_bytes, name


@pytest.fixture(scope='module')
def restored_unsealed(sc, sealed_ipc):
    """The unsealed checkpoint restored (nobody dies: a seal arms no
    kill); every peer then read once from its channel.
    """
    _, _, unsealed = sealed_ipc
    alive = isc.restore(sc, unsealed, [])
    assert set(sc.named() + sc.peers()) <= alive
    return sc.guest.ipc_reads(sc.peers())


@pytest.mark.parametrize('name,role', BUFFER_READERS)
def test_unsealed_bytes_in_flight_are_delivered(sc, restored_unsealed,
                                                name, role):
    """What the writer left unread in the pipe / socket queue at the save
    reaches the reader after seal, unseal and restore.
    """
    got = restored_unsealed[sc.pid(name, role)]
    assert (got['scenario'], got['role']) == (name, role)
    assert got['found'], got
    assert got['ret'] > 0, got


def test_unsealed_tty_echo_is_delivered(sc, restored_unsealed):
    got = restored_unsealed[sc.pid('pty', 'terminal')]
    assert got['found'], got
