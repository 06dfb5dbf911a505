"""``openstack image scrub show``."""

from unittest import mock

from sparc_nova.osc import image_scrub


def _show(properties):
    conn = mock.Mock()
    image = mock.Mock(id='img-1', properties=properties)
    image.name = 'snap'
    conn.image.find_image.return_value = image
    conn.image.get_image.return_value = image
    app = mock.Mock()
    app.client_manager.sparc = conn
    cmd = image_scrub.ShowImageScrub(app, None)
    parsed = cmd.get_parser('openstack image scrub show').parse_args(
        ['snap'])
    return dict(zip(*cmd.take_action(parsed)))


def test_scrubbed_snapshot():
    rows = _show({'sparc_scrubbed': 'true',
                  'sparc_policy_digest': 'sha256:ab',
                  'sparc_scrub_summary': 'removed 2 paths',
                  'instance_uuid': 'srv-1', 'image_type': 'snapshot'})
    assert rows == {'image': 'img-1', 'name': 'snap', 'scrubbed': 'true',
                    'policy_digest': 'sha256:ab',
                    'summary': 'removed 2 paths', 'instance_uuid': 'srv-1',
                    'image_type': 'snapshot'}


def test_instance_uuid_as_openstacksdk_gives_it():
    """openstacksdk's Image has ``instance_uuid`` as an attribute, not in
    ``properties``.
    """
    image = mock.Mock(id='img-1', properties={'sparc_scrubbed': 'true'},
                      instance_uuid='srv-1', image_type=None)
    image.name = 'snap'
    rows = dict(zip(*image_scrub.ShowImageScrub.columns_of(image)))
    assert rows['instance_uuid'] == 'srv-1'
    assert rows['image_type'] == ''


def test_image_never_scrubbed():
    assert _show({})['scrubbed'] == 'none'
