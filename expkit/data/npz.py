"""Reading Keras-layout npz files safely (object arrays through an allow-list), and their array headers alone."""

from __future__ import annotations

import math
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from expkit.errors import ExpkitError


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy object arrays of plain lists and numbers, and nothing else (no code can run)."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays of lists and numbers are allowed")


def _read_member(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    with archive.open(name) as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if dtype.hasobject:
            return compact_sequences(_ArraysOnlyUnpickler(f).load())
        buffer = bytearray(dtype.itemsize * math.prod(shape))
        if f.readinto(buffer) != len(buffer):
            raise EOFError(f"{name} is shorter than its header says")
        return np.frombuffer(buffer, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def compact_sequences(items: Any) -> np.ndarray:
    """An object array whose Python int lists become int32 arrays, each list freed as soon as it is copied.

    Keras' word-index files hold 25,000 lists of Python ints per split: about 10x the memory of int32.
    """
    items = np.asarray(items, dtype=object) if not isinstance(items, np.ndarray) else items
    if items.dtype != object or items.ndim != 1:
        return items
    out = np.empty(len(items), dtype=object)
    for i in range(len(items)):
        seq = items[i]
        out[i] = np.asarray(seq, dtype=np.int32) if isinstance(seq, list | tuple | np.ndarray) else seq
        items[i] = None
    return out


def read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Read `keys` from a Keras-layout npz; every failure becomes an error that names the file.

    Object arrays (imdb/reuters word sequences) are unpickled with an allow-list, so a crafted
    file cannot run code.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = {n.removesuffix(".npy"): n for n in archive.namelist()}
            missing = [k for k in keys if k not in members]
            if missing:
                raise ExpkitError(
                    f"{path} has no array(s) {', '.join(missing)} (it has: {', '.join(members) or 'none'})",
                    hint="the file must follow the Keras layout for this dataset",
                )
            return {k: _read_member(archive, members[k]) for k in keys}
    except ExpkitError:
        raise
    except (OSError, ValueError, EOFError, TypeError, zipfile.BadZipFile, zlib.error, pickle.UnpicklingError, KeyError) as exc:
        raise ExpkitError(
            f"cannot read {path}: {exc.__class__.__name__}: {exc}", hint="the file is truncated, corrupt or not an npz; get it again"
        ) from None


def check_lengths(path: Path, pairs: tuple[tuple[str, str], ...], arrays: dict[str, np.ndarray]) -> None:
    """Features and labels in `path` must have the same number of samples."""
    for xk, yk in pairs:
        if len(arrays[xk]) != len(arrays[yk]):
            raise ExpkitError(
                f"{path}: {xk} has {len(arrays[xk])} samples but {yk} has {len(arrays[yk])}", hint="features and labels must be aligned"
            )


def npz_lengths(path: Path, arrays: tuple[str, ...]) -> dict[str, int]:
    """The first dimension of each array in an npz, read from the array headers only (nothing is loaded)."""
    return {name: shape[0] if shape else 0 for name, shape in npz_shapes(path, arrays).items()}


def npz_shapes(path: Path, arrays: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """The shape of each array in an npz, read from the array headers only (nothing is loaded)."""
    import numpy as np

    try:
        with zipfile.ZipFile(path) as archive:
            members = {n.removesuffix(".npy"): n for n in archive.namelist()}
            if any(a not in members for a in arrays):
                read_npz(path, arrays)  # raises the loader's own error, naming the missing arrays
            lengths: dict[str, tuple[int, ...]] = {}
            for name in arrays:
                with archive.open(members[name]) as f:
                    version = np.lib.format.read_magic(f)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    lengths[name] = tuple(int(n) for n in read(f)[0])
            return lengths
    except ExpkitError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise ExpkitError(
            f"cannot read {path}: {exc.__class__.__name__}: {exc}",
            key="dataset.path",
            hint="the file is truncated, corrupt or not an npz; get it again",
        ) from None
