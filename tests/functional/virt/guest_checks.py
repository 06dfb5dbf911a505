"""What the driver tests start in a test bed guest and check in it and
in its managed save.
"""

__all__ = ['start_processes', 'in_memory', 'wait_for_new_heartbeats']


def start_processes(g):
    """``vault`` (excluded) and ``webapp`` (control), each holding a
    marker; returns their pids.
    """
    return {'vault': g.start_workload('hold 1 --pages 16', program='vault'),
            'webapp': g.start_workload('hold 4', program='webapp')}


def in_memory(path, marker):
    from sparc_nova.engine import listings
    counts = listings.count_markers(path, [marker.encode()])
    return counts[marker.encode()]['memory']


def wait_for_new_heartbeats(g, count=3, timeout=60):
    since = g.console_size()
    for _ in range(count):
        m = g.wait_for(r'HEARTBEAT (\d+)', timeout=timeout, since=since)
        since += m.end()
