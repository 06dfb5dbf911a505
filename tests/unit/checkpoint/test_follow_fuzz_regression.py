"""Replay the fuzzing corpora of a save image followed while it is written
and of the decompression front end (tools/fuzz/follow_targets.py), and
refuse decompression bombs.
"""

import glob
import os
import subprocess

import pytest

from sparc_nova.checkpoint import checkpoint
from sparc_nova.checkpoint import compression
from sparc_nova.checkpoint import stream_follow
from sparc_nova import exception
from tests import streamgen
from tools.fuzz import follow_targets

CORPUS = os.path.join(os.path.dirname(__file__), '..', '..', 'fuzz_corpus')


def _files(name):
    return sorted(glob.glob(os.path.join(CORPUS, name, '*')))


def test_corpora_present():
    assert len(_files('follow')) >= 3
    assert len(_files('decompress')) >= 5
    assert len(_files('decompress-structured')) >= 5


@pytest.mark.parametrize('path', _files('follow'), ids=os.path.basename)
def test_follow_corpus_replay(path):
    with open(path, 'rb') as f:
        follow_targets.follow_stream(f.read())
    assert stream_follow.POLL_SECONDS > 0


@pytest.mark.parametrize('path', _files('decompress'), ids=os.path.basename)
def test_decompress_corpus_replay(path):
    with open(path, 'rb') as f:
        follow_targets.decompress_stream(f.read())


@pytest.mark.parametrize('path', _files('decompress-structured'),
                         ids=os.path.basename)
def test_decompress_structured_corpus_replay(path):
    with open(path, 'rb') as f:
        follow_targets.decompress_built(f.read())


def test_built_compressed_image_reaches_the_stream_parser(tmp_path):
    """The structured target's images decompress and are parsed (this
    one is a stream prologue too short for its RAM).
    """
    image = follow_targets.compressed_image(b'\x01\x03\x00\x00')
    path = tmp_path / 'built.save'
    path.write_bytes(image)
    with pytest.raises(exception.LimitExceeded,
                       match=r'\(decompressed bzip2 stream\): at offset 66'):
        checkpoint.open_checkpoint(str(path), work_dir=str(tmp_path))
    assert os.listdir(tmp_path) == ['built.save']


PROGRAMS = sorted(compression.NAMES.items())[1:]


@pytest.mark.parametrize('fmt,prog', PROGRAMS, ids=[p for _, p in PROGRAMS])
def test_decompression_bomb_is_refused(tmp_path, monkeypatch, fmt, prog):
    """A 4 KiB guest's image whose stream expands to 8 MiB of zeros: the
    decompressor is stopped at the stream bound and nothing is left in
    the work directory.
    """
    monkeypatch.setattr(stream_follow, 'EXTRA_STREAM_BYTES', 1 << 20)
    bomb = subprocess.run([prog, '-c'], input=bytes(8 << 20),
                          capture_output=True, check=True).stdout
    path = tmp_path / 'bomb.save'
    path.write_bytes(streamgen.libvirt_header(4, compressed=fmt) + bomb)
    work = tmp_path / 'work'
    work.mkdir()
    with pytest.raises(exception.CheckpointFormatError,
                       match='decompresses to more than'):
        checkpoint.open_checkpoint(str(path), work_dir=str(work))
    assert os.listdir(work) == []
