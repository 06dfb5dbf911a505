"""The disk verification's failure messages: counts read as words."""

import types

import pytest

from sparc_nova.engine.disk import verify
from sparc_nova import exception


def residual_message(canaries, files, occurrences):
    """The message for ``canaries`` canaries left of ``files`` removed
    files, seen ``occurrences`` times.
    """
    datas = [b'canary-%d' % i for i in range(canaries)]
    session = types.SimpleNamespace(
        image='img.qcow2',
        report=types.SimpleNamespace(residual=0),
        canaries=[types.SimpleNamespace(data=d, path='/f%d' % (i % files))
                  for i, d in enumerate(datas)])
    hits = {d: 0 for d in datas}
    hits[datas[0]] = occurrences
    with pytest.raises(exception.DiskVerificationError) as e:
        verify._raise_residual(session, hits, set(datas), '/dev/sda1',
                               'still readable')
    return str(e.value)


def test_one_canary_of_one_file():
    assert '1 canary of 1 removed file is still readable (1 occurrence)' \
        in residual_message(1, 1, 1)


def test_canaries_of_files():
    assert '3 canaries of 2 removed files are still readable (5 ' \
        'occurrences)' in residual_message(3, 2, 5)
