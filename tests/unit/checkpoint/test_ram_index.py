"""The RAM index's compact columns: records kept as runs, or as plain
columns with payload offsets kept as header lengths and block numbers
as bytes.
"""

import numpy as np
import pytest

from sparc_nova.checkpoint import ram_index


def _index(records, blocks=2):
    """An index of ``records`` ``(block, page, hdr_off, data_off, kind,
    fill)`` added one at a time, then a run of 3 PAGE records of block 0.
    """
    b = ram_index.RamIndexBuilder(100)
    for rec in records:
        assert b.add(*rec)
    for i, page in enumerate((5, 6, 7)):
        assert b.add_run(0, page, 1, 9000 + i * 4104, 4104,
                         ram_index.KIND_PAGE)
    return b.finish([ram_index.RamBlock(i, 'b%d' % i, 8 * 4096)
                     for i in range(blocks)])


RECORDS = [(0, 0, 100, 100 + 8 + 1 + 6, ram_index.KIND_PAGE, 0),
           (1, 3, 4210, 4218, ram_index.KIND_ZERO, 0xaa),
           (0, 4, 4219, 4227, ram_index.KIND_PAGE, 0)]


def test_payload_offsets_are_header_plus_length():
    idx = _index(RECORDS)
    data = [115, 4218, 4227, 9008, 13112, 17216]
    assert idx.rec_header_len.dtype == np.uint16
    assert idx.rec_block.dtype == np.uint8
    assert idx.rec_data[0] == 115 and type(int(idx.rec_data[3])) is int
    assert idx.rec_data[np.array([5, 1])].tolist() == [17216, 4218]
    assert idx.rec_data[idx.rec_kind == ram_index.KIND_ZERO].tolist() == \
        [4218]
    assert idx.rec_data[2:4].dtype == np.int64
    assert np.array_equal(idx.rec_data, data) and len(idx.rec_data) == 6
    assert idx.last[0].tolist() == [0, -1, -1, -1, 2, 3, 4, 5]


@pytest.mark.parametrize('off, rec', [
    (0, -1), (114, -1), (115, 0), (4209, 0),
    (4210, 0),          # header of record 1: still inside record 0's page
    (4218, 1), (4226, 1), (4227, 2), (9007, 2), (9008, 3), (17216 + 10, 5)])
def test_record_at_a_stream_offset(off, rec):
    assert _index(RECORDS).rec_data.record_at(off) == rec


@pytest.mark.parametrize('data_off', [99, 100 + ram_index.MAX_HEADER + 1])
def test_a_payload_outside_its_header_reach_is_refused(data_off):
    b = ram_index.RamIndexBuilder(10)
    with pytest.raises(ValueError, match='record at 100'):
        b.add(0, 0, 100, data_off, ram_index.KIND_PAGE, 0)


def test_many_blocks_keep_wide_block_numbers():
    idx = _index(RECORDS, blocks=300)
    assert idx.rec_block.dtype == np.int32
    assert idx.rec_block.tolist() == [0, 1, 0, 0, 0, 0]


def _stream(rng, records, kinds='runs'):
    """``records`` records as a QEMU stream lays them out: runs of
    CONTINUE records of consecutive pages of one kind, each run after a
    record naming its block; with ``kinds='alternate'`` every record is
    of the other kind than the one before it. Returns the dense truth
    (a list of column arrays) and the records as the parser adds them.
    """
    calls, rows, off, rec = [], [], 1000, 0
    while rec < records:
        block = int(rng.integers(0, 3))
        page = int(rng.integers(0, 4000))
        n = min(records - rec, int(rng.integers(1, 300)))
        run_fill = int(rng.integers(0, 2))
        for i in range(n):
            if kinds == 'alternate':
                kind = ram_index.KIND_PAGE if (rec + i) % 2 else \
                    ram_index.KIND_ZERO
            else:
                kind = ram_index.KIND_PAGE if rec % 3 else \
                    ram_index.KIND_ZERO
            fill = run_fill ^ (2 * i >= n) if kind == ram_index.KIND_ZERO \
                else 0
            hlen = 8 + 1 + 4 if i == 0 else 8
            p = page // 2 + 2 * i if kinds == 'stride' else page + i
            rows.append((block, p, off, hlen, kind, fill))
            calls.append((block, p, off, off + hlen, kind, fill))
            off += hlen + (4096 if kind == ram_index.KIND_PAGE else 1)
        rec += n
    truth = [np.array(c) for c in zip(*rows)]
    return truth, calls


def _build(calls, runs_at_once=True):
    """The index of ``calls``: consecutive records of one block, kind and
    fill after the first of a run added with ``add_run`` (as the parser
    does), when ``runs_at_once``.
    """
    b = ram_index.RamIndexBuilder(len(calls))
    i = 0
    while i < len(calls):
        assert b.add(*calls[i])
        j = i + 1
        while (runs_at_once and j < len(calls) and
               calls[j][0] == calls[i][0] and calls[j][4] == calls[i][4] and
               calls[j][1] == calls[j - 1][1] + 1 and
               calls[j][3] - calls[j][2] == 8):
            j += 1
        if j > i + 1:
            run = calls[i + 1:j]
            stride = run[1][2] - run[0][2] if len(run) > 1 else 0
            assert b.add_run(run[0][0], run[0][1], len(run), run[0][2],
                             stride, run[0][4],
                             np.array([c[5] for c in run]))
        i = j
    return b.finish([ram_index.RamBlock(i, 'b%d' % i, 4400 * 4096)
                     for i in range(3)])


def _assert_columns(idx, truth, rng):
    names = ('rec_block', 'rec_page', 'rec_hdr', 'rec_header_len',
             'rec_kind', 'rec_fill')
    n = len(truth[0])
    data = truth[2] + truth[3]
    picks = rng.integers(-n, n, size=500)
    mask = rng.integers(0, 2, size=n).astype(bool)
    for name, col in list(zip(names, truth)) + [('rec_data', data)]:
        column = getattr(idx, name)
        assert np.array_equal(np.asarray(column), col), name
        assert column[picks].tolist() == col[picks].tolist(), name
        assert column[mask].tolist() == col[mask].tolist(), name
        assert column[n // 3:n // 2].tolist() == col[n // 3:n // 2].tolist()
        for r in (0, n - 1, -1, -n, int(picks[0])):
            assert int(column[r]) == int(col[r]), (name, r)
        with pytest.raises(IndexError):
            column[n]
        with pytest.raises(IndexError):
            column[np.array([0, -n - 1])]
    got = idx.columns(picks, 'kind', 'fill', 'page', 'data')
    assert [c.tolist() for c in got] == [
        truth[4][picks].tolist(), truth[5][picks].tolist(),
        truth[1][picks].tolist(), data[picks].tolist()]
    for b in range(3):
        last = np.full(4400, -1)
        for r in np.flatnonzero(truth[0] == b):
            last[truth[1][r]] = r
        assert idx.last[b].tolist() == last.tolist()
    dense = ram_index.PayloadOffsets(truth[2], truth[3])
    for off in list(rng.integers(0, int(data[-1]) + 5000, size=300)) + \
            [int(x) + d for x in truth[2][:50] for d in (-1, 0, 1)]:
        assert idx.rec_data.record_at(int(off)) == dense.record_at(int(off))


def test_a_stream_of_runs_is_kept_as_runs():
    rng = np.random.default_rng(7)
    truth, calls = _stream(rng, 3 * ram_index.FOLD + 123)
    idx = _build(calls)
    assert idx.storage == 'runs'
    assert isinstance(idx.rec_page, ram_index.RunColumn)
    assert idx.rec_page.dtype == np.int32 and idx.rec_block.dtype == np.uint8
    # A stream run: its named first record, then its CONTINUE records,
    # one index run per stretch of one fill byte.
    assert idx.runs < len(calls) / 10
    summary = idx.summary()
    assert summary['storage'] == 'runs' and summary['runs'] == idx.runs
    assert summary['bytes'] < ram_index.PLAIN_RECORD_BYTES * len(calls) / 5
    _assert_columns(idx, truth, rng)


@pytest.mark.parametrize('kinds, runs_at_once', [
    ('stride', True),       # pages two apart: no run is read at once
    ('runs', False),        # every record added alone
])
def test_records_added_alone_are_kept_as_plain_columns(kinds, runs_at_once):
    rng = np.random.default_rng(10)
    truth, calls = _stream(rng, ram_index.FOLD + 500, kinds=kinds)
    idx = _build(calls, runs_at_once)
    assert idx.storage == 'columns'
    _assert_columns(idx, truth, rng)


def test_alternating_kinds_are_kept_as_plain_columns():
    rng = np.random.default_rng(8)
    truth, calls = _stream(rng, ram_index.FOLD + 77, kinds='alternate')
    idx = _build(calls)
    assert idx.storage == 'columns'
    assert isinstance(idx.rec_page, np.ndarray)
    assert idx.summary()['bytes'] == \
        ram_index.PLAIN_RECORD_BYTES * len(calls)
    _assert_columns(idx, truth, rng)


def test_last_copies_and_stats_agree_between_storages():
    rng = np.random.default_rng(9)
    truth, calls = _stream(rng, 20000)
    runs = _build(calls)
    rng2 = np.random.default_rng(9)
    _, alt = _stream(rng2, 20000, kinds='alternate')
    # Same blocks and pages, other kinds: compare what does not depend
    # on kinds.
    plain = _build(alt)
    assert (runs.storage, plain.storage) == ('runs', 'columns')
    for b in range(3):
        assert np.array_equal(runs.last[b], plain.last[b])
        assert runs.single_copy[b] == plain.single_copy[b]
        pages = np.flatnonzero(runs.last[b] >= 0)[::7]
        assert np.array_equal(runs.copies_of(b, pages),
                              plain.copies_of(b, pages))
    for name, st in runs.stats().items():
        other = plain.stats()[name]
        for key in ('records', 'missing_pages', 'pages_sent_more_than_once'):
            assert st[key] == other[key]


def test_a_scalar_lookup_gives_a_numpy_scalar_of_the_column_dtype():
    idx = _index(RECORDS)
    for name in ('rec_block', 'rec_page', 'rec_kind', 'rec_fill'):
        col = getattr(idx, name)
        assert isinstance(col[1], col.dtype.type)
    assert bytes([idx.rec_fill[1]]) == b'\xaa'


def _once(rng, pages=4000):
    """A block's pages each sent once, in runs of consecutive pages in a
    shuffled order, some pages never sent. Returns the builder's calls
    and the expected last copies.
    """
    cuts = np.sort(rng.choice(np.arange(1, pages), size=60, replace=False))
    spans = list(zip(np.concatenate([[0], cuts]).tolist(),
                     np.concatenate([cuts, [pages]]).tolist()))
    rng.shuffle(spans)
    calls, last, off = [], np.full(4400, -1), 1000
    for i, (a, b) in enumerate(spans):
        if i % 7 == 3:
            continue            # never sent
        for p in range(a, b):
            last[p] = len(calls)
            hlen = 13 if p == a else 8
            calls.append((0, p, off, off + hlen, ram_index.KIND_PAGE, 0))
            off += hlen + 4096
    return calls, last


def test_pages_sent_once_keep_their_last_copies_as_runs():
    rng = np.random.default_rng(11)
    calls, want = _once(rng)
    idx = _build(calls)
    last = idx.last[0]
    assert isinstance(last, ram_index.LastCopies) and idx.single_copy[0]
    # A block with nothing sent: no runs.
    assert idx.last[1].tolist() == [-1] * 4400 and int(idx.last[1][7]) == -1
    n = len(want)
    assert len(last) == n and last.tolist() == want.tolist()
    picks = rng.integers(-n, n, size=400)
    assert last[picks].tolist() == want[picks].tolist()
    for p in (0, n - 1, -1, -n, int(picks[0])):
        assert int(last[p]) == int(want[p])
        assert isinstance(last[p], last.dtype.type)
    mask = want >= 0
    assert np.array_equal(last >= 0, mask)
    assert last[mask].tolist() == want[mask].tolist()
    view = last[1000:3000]
    assert isinstance(view, ram_index.LastCopies) and len(view) == 2000
    assert view.tolist() == want[1000:3000].tolist()
    assert int(view[5]) == int(want[1005])
    assert view[10:20].tolist() == want[1010:1020].tolist()
    assert view[np.array([0, 1999])].tolist() == [want[1000], want[2999]]
    assert last[::3].tolist() == want[::3].tolist()
    assert np.maximum(view, 0).tolist() == np.maximum(want[1000:3000],
                                                      0).tolist()
    for bad in (n, -n - 1):
        with pytest.raises(IndexError):
            last[bad]
    with pytest.raises(IndexError):
        view[np.array([2000])]
    pages = np.flatnonzero(mask)[::5]
    assert idx.copies_of(0, pages).tolist() == sorted(want[pages].tolist())


def test_a_page_sent_twice_keeps_a_plain_table():
    rng = np.random.default_rng(12)
    calls, want = _once(rng)
    off = calls[-1][3] + 4096
    calls.append((0, 17, off, off + 13, ram_index.KIND_ZERO, 0))
    want[17] = len(calls) - 1
    idx = _build(calls)
    assert isinstance(idx.last[0], np.ndarray) and not idx.single_copy[0]
    assert idx.last[0].tolist() == want.tolist()


@pytest.mark.parametrize('n_keys, n_q, ascending', [
    (0, 50, True), (5, 200, True), (5, 200, False), (40, 30, True),
    (100, 5000, True)])
def test_search_right_is_searchsorted(n_keys, n_q, ascending):
    rng = np.random.default_rng(n_keys + n_q)
    keys = np.sort(rng.integers(0, 1000, size=n_keys))
    q = rng.integers(-5, 1005, size=n_q)
    if ascending:
        q = np.sort(q)
    assert ram_index.search_right(keys, q).tolist() == \
        np.searchsorted(keys, q, side='right').tolist()
