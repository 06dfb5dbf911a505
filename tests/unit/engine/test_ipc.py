"""The IPC graph's edges and the follow rule (guest objects replaced by
plain records; the kernel side is exercised on real guests in
tests/functional/engine/test_ipc.py).
"""

from unittest import mock

from sparc_nova.engine import ipc
from sparc_nova.introspect import files


def held(pid, fd, kind, obj, mode='rw', inode=0x100):
    return files.OpenFile(pid=pid, fd=fd, file=0x1000 + pid * 16 + fd,
                          inode=inode, ino=7, kind=kind, mode=mode,
                          object=obj)


def graph_of(holders):
    graph = ipc.IpcGraph(files={}, objects={}, edges=[],
                         comms={h.pid: 'p%d' % h.pid for h in holders})
    reader = mock.Mock()
    for h in holders:
        graph.files.setdefault(h.pid, []).append(h)
        ipc._add_holder(graph, reader, h)
    ipc._pipe_edges(graph)
    ipc._shared_edges(graph)
    return graph


def edges(graph):
    return sorted((e.src, e.dst, e.kind) for e in graph.edges
                  if e.src != e.dst)


def test_pipe_edges_go_from_writers_to_readers():
    g = graph_of([held(10, 4, 'pipe', 'pipe:[5]', 'w'),
                  held(11, 3, 'pipe', 'pipe:[5]', 'r'),
                  held(12, 3, 'pipe', 'pipe:[5]', 'r')])
    assert edges(g) == [(10, 11, 'pipe'), (10, 12, 'pipe')]


def test_a_process_holding_both_ends_has_no_edge_to_itself():
    g = graph_of([held(10, 3, 'pipe', 'pipe:[5]', 'r'),
                  held(10, 4, 'pipe', 'pipe:[5]', 'w')])
    assert edges(g) == []


def test_shared_memory_links_every_pair_both_ways():
    g = graph_of([held(10, -1, 'sysv-shm', '/SYSV0', inode=0x200),
                  held(11, -1, 'sysv-shm', '/SYSV0', inode=0x200)])
    assert edges(g) == [(10, 11, 'sysv-shm'), (11, 10, 'sysv-shm')]


def test_regular_files_link_writers_to_readers_only():
    g = graph_of([held(10, 3, 'file', '/srv/log', 'w', inode=0x300),
                  held(11, 3, 'file', '/srv/log', 'r', inode=0x300),
                  held(12, 3, 'file', '/srv/log', 'r', inode=0x300)])
    assert edges(g) == [(10, 11, 'file'), (10, 12, 'file')]


def chain_graph():
    return ipc.IpcGraph(
        files={}, objects={}, comms={1: 'init', 10: 'w', 11: 'r', 12: 's',
                                     13: 'x'},
        edges=[ipc.Edge(10, 11, 'pipe', 'pipe:[1]'),
               ipc.Edge(11, 12, 'pipe', 'pipe:[2]'),
               ipc.Edge(12, 1, 'unix-stream', 'socket:[3]'),
               ipc.Edge(13, 10, 'pipe', 'pipe:[4]')])


def test_follow_pulls_in_peers_transitively_with_their_edge():
    chosen = {10: ['pid:10']}
    pulled, at_risk = ipc.follow(chain_graph(), chosen, True)
    assert [p['pid'] for p in pulled] == [11, 12]
    assert chosen[12] == ['ipc: pipe pipe:[2] from pid 11']
    assert pulled[0]['edge'] == {'from': 10, 'to': 11, 'kind': 'pipe',
                                 'object': 'pipe:[1]'}
    # init is never excluded; the writer's own source (13) is not reached
    assert [(p['pid'], p['reason']) for p in at_risk] == \
        [(1, 'pid 1 is never excluded')]
    assert 13 not in chosen


def test_no_follow_reports_peers_and_adds_nothing():
    chosen = {10: ['pid:10']}
    pulled, at_risk = ipc.follow(chain_graph(), chosen, False)
    assert pulled == []
    assert chosen == {10: ['pid:10']}
    assert [p['pid'] for p in at_risk] == [11, 12, 1]


def test_report_names_hash_file_names_only():
    assert ipc.report_name('pipe', 'pipe:[5]') == 'pipe:[5]'
    label = ipc.report_name('shared-memory', '/srv/keys/id_rsa')
    assert label.startswith('sha256:') and 'id_rsa' not in label
