import numpy as np
import pytest

from sparc_nova.engine import errors
from sparc_nova.engine import memory
from sparc_nova.engine import physview
from sparc_nova import exception


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / 'junk'
    path.write_bytes(b'not a checkpoint at all' * 10)
    with pytest.raises(exception.CheckpointError) as e:
        memory.scrub_checkpoint(str(path), ['pid:5'])
    assert str(path) in str(e.value)
    assert path.read_bytes() == b'not a checkpoint at all' * 10


def test_argument_errors(tmp_path):
    with pytest.raises(exception.CheckpointError,
                       match='exclude each other'):
        memory.scrub_checkpoint(str(tmp_path / 'x'), ['a'], in_place=True,
                                output=str(tmp_path / 'y'))
    with pytest.raises(errors.SelectorError):
        memory.scrub_checkpoint(str(tmp_path / 'x'), ['pid:1'])


def test_signature_is_stable():
    import inspect
    params = inspect.signature(memory.scrub_checkpoint).parameters
    assert list(params)[:2] == ['path', 'selectors']
    for name in ('output', 'in_place', 'with_children', 'scrub_free_memory',
                 'dry_run', 'work_dir', 'progress', 'follow_ipc',
                 'exclude_paths'):
        assert params[name].kind == inspect.Parameter.KEYWORD_ONLY


def test_changed_pages_is_compact_and_patched_content_wins():
    """A scrubbed frame that is also patched gets its patched content;
    frames already holding their fill are left out.
    """
    class Memory:
        def holds(self, pfns, fill):
            return np.asarray(pfns) == 4      # frame 4 is already zero

    class Patcher:
        scrubbed = {0: np.array([2, 3, 4], dtype=np.int64),
                    0x6b: np.array([8], dtype=np.int64)}
        patched_pfns = [3]

        def replacements_for(self, pfn):
            return b'P' * 4096

    r = memory.changed_pages(Memory(), Patcher())
    assert dict(r.items()) == {2: bytes(4096), 8: b'\x6b' * 4096,
                               3: b'P' * 4096}


def test_filled_frames_reads_pages_only_when_asked():
    """Frame 4 is a ZERO record, frame 5 a data page of zeroes: both hold
    the fill, but only reading the page shows it for frame 5; without
    reading pages (a rewrite to a new file) frame 5 is written anew.
    """
    class Memory:
        def __init__(self):
            self.pages_read = 0

        def fills(self, pfns):
            return np.array([0 if p == 4 else physview.DATA for p in pfns],
                            dtype=np.int16)

        def holds(self, pfns, fill):
            self.pages_read += 1
            return np.isin(pfns, [4, 5])

    class Patcher:
        scrubbed = {0: np.array([3, 4, 5], dtype=np.int64)}

    mem = Memory()
    assert memory.filled_frames(mem, Patcher())[0].tolist() == [3]
    assert mem.pages_read == 1
    assert memory.filled_frames(
        mem, Patcher(), read_pages=False)[0].tolist() == [3, 5]
    assert mem.pages_read == 1
