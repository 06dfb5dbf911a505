"""Canary selection."""

from sparc_nova.engine.disk import canaries


def test_usable_needs_length_and_variety():
    assert canaries.usable(b'abcdefghijklmnop')
    assert not canaries.usable(b'aaaaaaaaaaaaaaaaaaaa')
    assert not canaries.usable(b'short')
    assert not canaries.usable(b'abcdef\nghijklmnop')


def test_best_piece_splits_on_separators():
    piece = canaries.best_piece(b'\0\0\0ab\nSECRET-0123456789abcdef\n\0')
    assert piece == b'SECRET-0123456789abcdef'
    assert canaries.best_piece(b'\0' * 256) is None


def test_best_piece_is_at_most_max_bytes():
    piece = canaries.best_piece(bytes(range(32, 127)) * 3)
    assert len(piece) == canaries.MAX_BYTES


def test_window_offsets_cover_start_and_end():
    assert canaries.window_offsets(100, 4) == [0]
    offsets = canaries.window_offsets(1 << 20, 4)
    assert offsets[0] == 0 and offsets[-1] == (1 << 20) - canaries.WINDOW
    assert len(offsets) == 4


def test_from_windows_deduplicates():
    found = canaries.from_windows('/f', [b'same-canary-bytes!'] * 3)
    assert [c.data for c in found] == [b'same-canary-bytes!']
    assert found[0].kind == 'content' and found[0].path == '/f'


def test_name_canary():
    assert canaries.name_canary('/a/note-SECRET.txt').data == \
        b'note-SECRET.txt'
    assert canaries.name_canary('/a/id_rsa') is None
    assert canaries.name_canary('/a/aaaaaaaaaa') is None
