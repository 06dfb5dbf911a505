"""The ``openstack server privacy`` commands: argument parsing, the
merge they show, and the metadata writes they make (Nova faked)."""

from unittest import mock

from osc_lib import exceptions
import pytest

from sparc_nova.osc import server_privacy


def _server(metadata=None, specs=None, image_id='img-1'):
    return mock.Mock(id='srv-1', metadata=metadata or {},
                     flavor={'extra_specs': specs or {}},
                     image={'id': image_id} if image_id else {})


def _command(cls, conn):
    app = mock.Mock()
    app.client_manager.sparc = conn
    return cls(app, None)


def _conn(server, metadata=None, image_properties=None):
    conn = mock.Mock()
    conn.compute.find_server.return_value = server
    conn.compute.get_server.return_value = server
    conn.compute.get_server_metadata.return_value = mock.Mock(
        metadata=metadata if metadata is not None else server.metadata)
    conn.image.get_image.return_value = mock.Mock(
        properties=image_properties or {})
    return conn


def _run(cls, conn, argv):
    cmd = _command(cls, conn)
    parsed = cmd.get_parser('openstack server privacy').parse_args(argv)
    return cmd.take_action(parsed)


def test_show_marks_what_the_project_cannot_change():
    server = _server(metadata={'sparc:exclude_processes': 'vault',
                               'sparc:exclude_paths': '!/secrets/**',
                               'other': 'x'},
                     specs={'sparc:exclude_paths': '/secrets/**',
                            'hw:cpu_policy': 'dedicated'})
    conn = _conn(server, image_properties={'sparc_suspend': 'refuse',
                                           'sparc_scrubbed': 'true'})
    columns, values = _run(server_privacy.ShowServerPrivacy, conn,
                           ['-f', 'json', 'srv-1'])
    rows = dict(zip(columns, values))
    assert rows['server'] == 'srv-1'
    assert rows['exclude_processes'] == [
        {'value': 'vault', 'sources': ['instance'], 'locked': False}]
    assert rows['exclude_paths'] == [
        {'value': '/secrets/**', 'sources': ['flavor'], 'locked': True},
        {'value': '!/secrets/**', 'sources': ['instance'], 'locked': False}]
    assert rows['suspend'] == {'value': 'refuse', 'sources': ['image'],
                               'locked': True}
    assert rows['scrubbed_checkpoints'] is True
    assert rows['unreadable_sources'] == []
    assert rows['digest'].startswith('sha256:')


def test_show_table_one_item_a_line():
    server = _server(metadata={'sparc:exclude_processes': 'vault,sshd'})
    columns, values = _run(server_privacy.ShowServerPrivacy, _conn(server),
                           ['srv-1'])
    rows = dict(zip(columns, values))
    assert rows['exclude_processes'] == 'vault [instance]\nsshd [instance]'
    assert rows['follow_ipc'] == 'true [default]'


def test_show_hidden_flavor_specs_and_deleted_image_are_named():
    server = _server(metadata={'sparc:exclude_processes': 'vault'})
    server.flavor = {'original_name': 'm1'}       # extra specs hidden
    conn = _conn(server)
    conn.image.get_image.side_effect = Exception('404')
    columns, values = _run(server_privacy.ShowServerPrivacy, conn,
                           ['-f', 'json', 'srv-1'])
    rows = dict(zip(columns, values))
    assert rows['unreadable_sources'] == ['flavor', 'image']


def test_show_invalid_policy_lists_the_problems():
    server = _server(metadata={'sparc:exclude_processes': 'pid:x'})
    with pytest.raises(exceptions.CommandError) as ei:
        _run(server_privacy.ShowServerPrivacy, _conn(server), ['srv-1'])
    assert ("problem: sparc:exclude_processes='pid:x' (instance metadata)"
            in str(ei.value))


def test_set_replaces_a_list_and_drops_its_continuations():
    server = _server()
    current = {'sparc:exclude_paths': '/a', 'sparc:exclude_paths.1': '/b',
               'sparc:exclude_processes': 'vault', 'other': 'x'}
    conn = _conn(server, metadata=current)
    _run(server_privacy.SetServerPrivacy, conn,
         ['srv-1', '--exclude-path', '/secrets/**', '--preset',
          'ssh-private-keys', '--no-follow-ipc', '--suspend', 'refuse'])
    conn.compute.set_server_metadata.assert_called_once_with(
        server, **{
            'sparc:exclude_paths': '/secrets/**,preset:ssh-private-keys',
            'sparc:follow_ipc': 'false', 'sparc:suspend': 'refuse'})
    conn.compute.delete_server_metadata.assert_called_once_with(
        server, ['sparc:exclude_paths.1'])


def test_set_invalid_value_never_reaches_nova():
    server = _server()
    conn = _conn(server)
    with pytest.raises(exceptions.CommandError) as ei:
        _run(server_privacy.SetServerPrivacy, conn,
             ['srv-1', '--exclude-process', 'pid:x'])
    assert "'pid:x': pid: takes a decimal number" in str(ei.value)
    assert 'nothing was changed' in str(ei.value)
    conn.compute.set_server_metadata.assert_not_called()
    conn.compute.delete_server_metadata.assert_not_called()


def test_set_nothing_is_an_error():
    with pytest.raises(exceptions.CommandError):
        _run(server_privacy.SetServerPrivacy, _conn(_server()), ['srv-1'])


def test_follow_ipc_flags_exclude_each_other():
    cmd = _command(server_privacy.SetServerPrivacy, mock.Mock())
    with pytest.raises(SystemExit):
        cmd.get_parser('x').parse_args(['s', '--follow-ipc',
                                        '--no-follow-ipc'])


def test_unset_removes_only_the_named_keys():
    current = {'sparc:exclude_paths': '/a', 'sparc:exclude_paths.1': '/b',
               'sparc:suspend': 'refuse', 'other': 'x'}
    conn = _conn(_server(), metadata=current)
    _run(server_privacy.UnsetServerPrivacy, conn, ['srv-1',
                                                   '--exclude-paths'])
    conn.compute.set_server_metadata.assert_not_called()
    conn.compute.delete_server_metadata.assert_called_once_with(
        mock.ANY, ['sparc:exclude_paths', 'sparc:exclude_paths.1'])


def test_unset_all():
    current = {'sparc:exclude_paths': '/a', 'sparc:suspend': 'refuse',
               'other': 'x'}
    conn = _conn(_server(), metadata=current)
    _run(server_privacy.UnsetServerPrivacy, conn, ['srv-1', '--all'])
    conn.compute.delete_server_metadata.assert_called_once_with(
        mock.ANY, ['sparc:exclude_paths', 'sparc:suspend'])
