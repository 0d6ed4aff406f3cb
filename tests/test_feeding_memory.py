"""imdb_dense's memory: the multi-hot matrix is built a block at a time, aligned, and read by tf.data in place."""

from __future__ import annotations

import numpy as np

from expkit.data import preprocess
from expkit.data.preprocess import aligned_zeros, multi_hot
from expkit.training import feeding


def test_multi_hot_in_blocks_matches_a_naive_loop_across_block_edges(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(preprocess, "MULTI_HOT_BLOCK", 7)
    rng = np.random.default_rng(3)
    seqs = [list(rng.integers(-2, 60, size=rng.integers(0, 20))) for _ in range(50)]
    seqs[7] = seqs[13] = []  # empty sequences, one starting a block
    expected = np.zeros((50, 50), np.uint8)
    for i, s in enumerate(seqs):
        for w in s:
            if 0 <= w < 50:
                expected[i, w] = 1
    got = multi_hot(np.asarray(seqs, dtype=object), 50)
    assert got.dtype == np.uint8 and np.array_equal(got, expected)
    assert got.ctypes.data % feeding.ALIGNMENT == 0 and got.flags.c_contiguous and got.flags.writeable


def test_aligned_zeros_is_aligned_for_any_shape_and_dtype() -> None:
    for shape, dtype in [((3, 5), np.uint8), ((1000, 17), np.float32), ((1, 1), np.int64), ((0, 4), np.int64)]:
        a = aligned_zeros(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and not a.any() and a.flags.c_contiguous and a.flags.writeable
        assert a.size == 0 or a.ctypes.data % preprocess.ALIGNMENT == 0  # an empty array has nothing to align


def test_a_big_aligned_array_is_read_in_place_and_gives_the_same_batches(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(feeding, "SHARE_MIN_BYTES", 1000)
    rng = np.random.default_rng(0)
    x = multi_hot(np.asarray([list(rng.integers(0, 300, size=40)) for _ in range(100)], dtype=object), 300)
    y = rng.integers(0, 2, 100).astype(np.float32)
    tensor, in_place = feeding.held(x, share=True)
    assert in_place
    x[5, 7] = 1 - x[5, 7]  # the tensor is the array's own memory
    assert int(tensor[5, 7]) == x[5, 7]
    x[5, 7] = 1 - x[5, 7]
    assert not feeding.held(x, share=False)[1]  # under a strategy: copied into a variable
    view, in_place = feeding.held(x[1:], share=True)  # a view 300 bytes in is not aligned: copied once, to an aligned buffer
    x[6, 7] = 1 - x[6, 7]
    assert in_place and int(view[5, 7]) != x[6, 7]  # read in place, but a copy: not the array's own memory
    x[6, 7] = 1 - x[6, 7]
    assert not feeding.held(np.ascontiguousarray(x[:2]), share=True)[1]  # too small to bother

    def all_batches(share: bool) -> list[tuple[np.ndarray, np.ndarray]]:
        data, orders = feeding.shuffled_epochs(x, y, 32, seed=4, share=share)
        orders.on_epoch_begin(1)
        return [(bx.numpy(), by.numpy()) for bx, by in data]

    shared, copied = all_batches(True), all_batches(False)
    assert len(shared) == 4
    for (a, b), (c, d) in zip(shared, copied, strict=True):
        assert a.dtype == np.float32 and np.array_equal(a, c) and np.array_equal(b, d)
