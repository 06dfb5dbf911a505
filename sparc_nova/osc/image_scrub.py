"""``openstack image scrub show``: the scrub record sparc-nova left on a
snapshot image (whether it was scrubbed, the digest of the policy it was
scrubbed under, the report's summary) and the instance it was taken of.
"""

import argparse

from osc_lib.command import command

from sparc_nova import policy

__all__ = ['ShowImageScrub', 'scrub_record']

#: Image properties shown besides the records (Nova sets them).
CONTEXT_PROPERTIES = ('instance_uuid', 'image_type')


def scrub_record(image_id: str, name: str, properties: dict) -> dict:
    """The fields ``show`` prints for an image with ``properties``;
    ``scrubbed`` is ``none`` for an image sparc-nova never scrubbed.
    """
    scrubbed = properties.get(policy.SCRUBBED_PROPERTY)
    return {'image': image_id, 'name': name,
            'scrubbed': 'none' if scrubbed is None else str(scrubbed),
            'policy_digest': properties.get(policy.DIGEST_PROPERTY, ''),
            'summary': properties.get(policy.SUMMARY_PROPERTY, ''),
            **{k: properties.get(k, '') for k in CONTEXT_PROPERTIES}}


class ShowImageScrub(command.ShowOne):
    """Show the scrub record of an image (a snapshot or shelved image of
    a server with a privacy policy).
    """

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument('image', metavar='<image>',
                            help='Image (name or ID)')
        return parser

    def take_action(self, parsed_args):
        conn = self.app.client_manager.sparc
        image = conn.image.find_image(parsed_args.image,
                                      ignore_missing=False)
        image = conn.image.get_image(image.id)
        return self.columns_of(image)

    @staticmethod
    def columns_of(image) -> tuple[tuple, tuple]:
        """The columns and values of an openstacksdk image: sparc-nova's
        records are among its ``properties``; the properties openstacksdk
        knows by name (``instance_uuid``) are attributes of the image.
        """
        properties = {k: str(v) for k, v in
                      (image.properties or {}).items()}
        for name in CONTEXT_PROPERTIES:
            value = getattr(image, name, None)
            if value is not None:
                properties.setdefault(name, str(value))
        record = scrub_record(image.id, image.name, properties)
        return tuple(record), tuple(record.values())
