"""A big array numpy did not align for TensorFlow is still read in place (one aligned copy, no variable), with the same batches."""

from __future__ import annotations

import numpy as np

from expkit.training import feeding


def misaligned(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """An array of `shape` whose data starts 16 bytes past a 64-byte boundary, as numpy's large allocations often do."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(int(np.prod(shape)) * itemsize + 128, dtype=np.uint8)
    start = (-raw.ctypes.data % 64) + 16
    out = raw[start : start + int(np.prod(shape)) * itemsize].view(dtype).reshape(shape)
    out[...] = np.random.default_rng(0).random(shape).astype(dtype)
    return out


def test_a_big_misaligned_array_is_read_in_place_with_the_same_batches() -> None:
    x = misaligned((5000, 1000), "float32")  # 20 MB: above SHARE_MIN_BYTES
    y = (np.arange(5000) % 10).astype(np.int64)
    assert x.ctypes.data % feeding.ALIGNMENT == 16 and not feeding.shareable(x)
    tensor, in_place = feeding.held(x, share=True)
    assert in_place
    np.testing.assert_array_equal(np.asarray(tensor), x)
    _, copied = feeding.held(x, share=False)  # under a distribution strategy: a variable, as before
    assert not copied
    got = [(bx.numpy(), by.numpy()) for bx, by in feeding.batches(x, y, 512)]
    assert len(got) == 10
    np.testing.assert_array_equal(np.concatenate([bx for bx, _ in got]), x)
    np.testing.assert_array_equal(np.concatenate([by for _, by in got]), y)
