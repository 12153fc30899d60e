"""Array namespaces: numpy on the CPU, CuPy on a CUDA GPU when it is installed (``nmosim[gpu]``).

Code written once against the Python array API (through ``array_api_compat``) runs on either;
this module only chooses the namespace and moves arrays between host and device.
"""

from __future__ import annotations

import functools
from types import ModuleType

import array_api_compat
import numpy as np


@functools.lru_cache(maxsize=1)
def _cupy() -> ModuleType | None:
    """CuPy's array-API namespace if CuPy imports and sees a GPU, else ``None``."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # not installed, no driver, no device
        return None
    return array_api_compat.array_namespace(cupy.empty(1))


def has_gpu_arrays() -> bool:
    """True when CuPy is installed and sees a CUDA GPU."""
    return _cupy() is not None


def namespace(device: str) -> ModuleType:
    """Array-API namespace for ``device``: CuPy's for 'cuda' when available, else numpy's."""
    if device == "cuda":
        xp = _cupy()
        if xp is not None:
            return xp
    return array_api_compat.array_namespace(np.empty(1))


def asarray(xp: ModuleType, data: np.ndarray, dtype=None):
    """``data`` as an array of namespace ``xp`` (copied to the GPU for CuPy)."""
    return xp.asarray(data, dtype=dtype)


def to_numpy(array) -> np.ndarray:
    """A host numpy array from a numpy or CuPy array."""
    if isinstance(array, np.ndarray):
        return array
    if array_api_compat.is_cupy_array(array):
        return array.get()
    return np.asarray(array)


def is_cupy(array) -> bool:
    """True for a CuPy array."""
    return array_api_compat.is_cupy_array(array)


def sparse_matrix(xp: ModuleType, matrix):
    """A scipy sparse matrix for use with arrays of ``xp`` (cupyx's copy on the GPU)."""
    if xp is _cupy():
        import cupyx.scipy.sparse

        return cupyx.scipy.sparse.csr_matrix(matrix)
    return matrix


def ndimage(xp: ModuleType) -> ModuleType:
    """``scipy.ndimage`` for numpy arrays, ``cupyx.scipy.ndimage`` (the same functions) for CuPy's."""
    if xp is _cupy():
        import cupyx.scipy.ndimage

        return cupyx.scipy.ndimage
    import scipy.ndimage

    return scipy.ndimage
