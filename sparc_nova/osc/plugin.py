"""The python-openstackclient plugin module (entry point
``openstack.cli.extension``): the commands are in the
``openstack.sparc.v1`` entry point group and talk to Nova and Glance
through the openstacksdk connection python-openstackclient already holds;
sparc-nova has no API service of its own.
"""

import argparse
from typing import Any

__all__ = ['API_NAME', 'API_VERSION_OPTION', 'API_VERSIONS',
           'DEFAULT_API_VERSION', 'build_option_parser', 'make_client']

API_NAME = 'sparc'
API_VERSION_OPTION = 'os_sparc_api_version'
DEFAULT_API_VERSION = '1'
API_VERSIONS = {'1': 'sparc_nova.osc.plugin'}


def make_client(instance: Any) -> Any:
    """The client of the ``sparc`` commands: the openstacksdk connection
    of python-openstackclient's client manager ``instance``.
    """
    return instance.sdk_connection


def build_option_parser(parser: argparse.ArgumentParser
                        ) -> argparse.ArgumentParser:
    """No global options: the commands use Nova's and Glance's."""
    return parser
