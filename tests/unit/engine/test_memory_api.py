import pytest

from sparc_nova.engine import errors
from sparc_nova.engine import memory
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
