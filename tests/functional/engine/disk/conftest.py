"""Session fixtures of the disk scrubber's functional tests: one marker
per run, the test tree, and images built once (ext4 without the
appliance, LVM/xfs/btrfs/LUKS in one appliance launch).
"""

import os
import secrets

import pytest

from tests.functional.engine.disk import images


@pytest.fixture(scope='session')
def disk_dir(work_root):
    path = os.path.join(work_root, 'disk')
    os.makedirs(path, exist_ok=True)
    return path


@pytest.fixture(scope='session')
def disk_tree(disk_dir):
    marker = 'SPRC' + secrets.token_hex(10).upper()
    return images.populate(os.path.join(disk_dir, 'tree'), marker)


@pytest.fixture(scope='session')
def ext4_qcow2(disk_tree, disk_dir):
    return images.ext4_image(disk_tree, os.path.join(disk_dir,
                                                     'ext4.qcow2'))


@pytest.fixture(scope='session')
def appliance_images(disk_tree, disk_dir):
    path = os.path.join(disk_dir, 'appliance')
    os.makedirs(path, exist_ok=True)
    return images.appliance_images(disk_tree, path)
