"""nova-compute runs as deployed: as the unprivileged nova user, and
sparc-nova's privsep daemon (root, the scrub of managed saves) is started
through Nova's root helper, ``sudo nova-rootwrap <rootwrap.conf>
privsep-helper ...``, so that the shipped rootwrap filter lets it through.
"""

import pwd

from tests.e2e.cloud import host_accounts
from tests.e2e import compute_host


def test_nova_compute_is_unprivileged(cloud):
    pid = compute_host.compute_pid(cloud)
    ids = compute_host.uids(pid)
    assert 0 not in ids, ids
    assert {pwd.getpwuid(i).pw_name for i in ids} == {'nova'}


def test_sparc_privsep_daemon_came_through_sudo_and_rootwrap(cloud):
    # init_host asked the daemon for interrupted saves: it is running.
    daemons = compute_host.privsep_daemons(cloud)
    assert len(daemons) == 1, daemons
    pid = daemons[0]
    assert compute_host.uids(pid)[0] == 0
    # sudo records who ran what: nova ran nova-rootwrap with the cloud's
    # rootwrap.conf, which ran privsep-helper for sparc-nova's context.
    env = compute_host.environ(pid, ('SUDO_USER', 'SUDO_COMMAND'))
    assert env.get('SUDO_USER') == 'nova', env
    command = env['SUDO_COMMAND'].split()
    assert command[:3] == host_accounts.rootwrap_command(cloud.conf) + [
        'privsep-helper'], command
    assert command[command.index('--privsep_context') + 1] == \
        compute_host.SPARC_CONTEXT
