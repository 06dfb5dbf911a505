"""A disk scrub that fails on the file a policy hides names it nowhere.

The file the rule selects is immutable (ext4 ``i`` attribute, set with
debugfs), so the appliance's ``shred`` fails on it and prints its path.
Through the CLI (``--debug --log-file``) and through the Nova glue (the
Scrubber, with a notifier that records what it would send), the secret
part of the path appears in no output, log, report, notification, fault
message or fault traceback.
"""

import os
import secrets
import subprocess
import sys
import traceback
from unittest import mock

import pytest

from sparc_nova import notifications
from sparc_nova.virt import exception as virt_exception
from sparc_nova.virt import scrubber
from tests.functional.engine.disk import images
from tests.unit.virt import fakes

pytestmark = pytest.mark.slow

#: ext4 inode flags: immutable | extents (mkfs -d gives files extents).
IMMUTABLE_EXTENTS = 0x80010


@pytest.fixture(scope='module')
def immutable_image(module_dir):
    """An ext4 qcow2 with ``/home/alice/deal-SECRET/terms-SECRET.txt``
    immutable; returns ``(path, secret, file path)``.
    """
    secret = 'SPRCFAIL' + secrets.token_hex(8).upper()
    root = os.path.join(module_dir, 'tree')
    deal = os.path.join(root, 'home', 'alice', 'deal-' + secret)
    os.makedirs(deal)
    guest_path = '/home/alice/deal-%s/terms-%s.txt' % (secret, secret)
    with open(root + guest_path, 'w') as f:
        f.write('the terms %s\n' % secret * 20)
    with open(os.path.join(root, 'home', 'alice', 'kept.txt'), 'w') as f:
        f.write('kept\n')
    raw = os.path.join(module_dir, 'immutable.raw')
    images.partitioned_raw(raw, 64)
    subprocess.run(['mkfs.ext4', '-q', '-F', '-E',
                    'offset=%d' % images.PART_OFFSET, '-d', root, raw,
                    '%dk' % (63 * 1024)], check=True, capture_output=True)
    subprocess.run(['debugfs', '-w', '-R', 'set_inode_field %s flags 0x%x'
                    % (guest_path, IMMUTABLE_EXTENTS),
                    '%s?offset=%d' % (raw, images.PART_OFFSET)],
                   check=True, capture_output=True)
    path = os.path.join(module_dir, 'immutable.qcow2')
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw,
                    path], check=True, capture_output=True)
    os.unlink(raw)
    return path, secret, guest_path


def _leaks(texts: dict, secret: str) -> list[str]:
    return [name for name, text in texts.items()
            if secret in text or secret.lower() in text]


def test_cli_failure_names_no_excluded_path(immutable_image, module_dir):
    src, secret, guest_path = immutable_image
    log = os.path.join(module_dir, 'cli.log')
    report = os.path.join(module_dir, 'cli-report.json')
    dst = os.path.join(module_dir, 'cli-out.qcow2')
    proc = subprocess.run(
        [sys.executable, '-m', 'sparc_nova.cmd.sparc', '--debug',
         '--log-file', log, 'image', 'scrub', src, '--output', dst,
         '--report', report, '--exclude-path', guest_path],
        capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 2, proc.stderr[-3000:]
    # It failed where the test means it to: shred on the immutable file.
    assert 'removing files failed: sh exited 1: shred: <path>' in \
        proc.stderr, proc.stderr[-3000:]
    with open(log) as f:
        texts = {'stdout': proc.stdout, 'stderr': proc.stderr,
                 'log': f.read()}
    if os.path.exists(report):
        with open(report) as f:
            texts['report'] = f.read()
    assert not os.path.exists(dst)
    assert _leaks(texts, secret) == []


def test_nova_failure_names_no_excluded_path(immutable_image, caplog):
    src, secret, guest_path = immutable_image
    notifier = mock.Mock(spec=notifications.ScrubNotifier, host='compute1')
    effective = fakes.effective(exclude_paths=guest_path)
    caplog.set_level('DEBUG')
    with pytest.raises(virt_exception.SparcScrubFailed) as e:
        scrubber.Scrubber(notifier).snapshot_file(
            'ctx', fakes.instance(), effective, 'img-1', src, 'qcow2')
    fault = e.value.format_message()
    assert 'removing files failed' in fault, fault
    texts = {
        'fault': fault,
        'fault details': ''.join(traceback.format_exception(e.value)),
        'notifications': repr(notifier.mock_calls),
        'log': caplog.text}
    assert _leaks(texts, secret) == []
    assert not os.path.exists(src + scrubber.SCRUBBED_SUFFIX)
