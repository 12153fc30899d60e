"""Array namespaces: numpy on the CPU, CuPy on a CUDA GPU when it is installed (``nmosim[gpu]``).

Code written once against the Python array API (through ``array_api_compat``) runs on either;
this module only chooses the namespace and moves arrays between host and device.
"""

from __future__ import annotations

import functools
import warnings
from types import ModuleType

import array_api_compat
import numpy as np

from nmosim.phantoms.shapes import to_host


@functools.lru_cache(maxsize=1)
def _cupy() -> ModuleType | None:
    """CuPy's array-API namespace if CuPy imports, sees a GPU and loads its cuFFT, else ``None``.

    CuPy loads cuFFT only at its first FFT; it is loaded here instead, so that a CuPy that cannot
    leaves the stages in numpy (with a warning) rather than failing in the middle of a case. A CuPy
    built for CUDA 12 asks for ``libcufft.so.11``, and where ASTRA has loaded a library of that name
    first (the GPU bundle's forwarding shim, shared/gpu/cufft_shim.c: five entry points), CuPy's
    cuFFT module cannot bind its other symbols.
    """
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # not installed, no driver, no device
        return None
    try:
        import cupy.cuda.cufft  # noqa: F401  (binds cuFFT now)
    except ImportError as error:
        warnings.warn(f"CuPy sees a GPU but cannot load cuFFT ({error}); the array stages run in numpy",
                      RuntimeWarning, stacklevel=2)  # fmt: skip
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
    """A host numpy array from an array of any namespace (numpy, CuPy, array_api_strict)."""
    return to_host(array)


def is_numpy(xp: ModuleType) -> bool:
    """True for numpy's namespace (numpy itself or ``array_api_compat``'s wrapper)."""
    return array_api_compat.is_numpy_namespace(xp)


def name(xp: ModuleType) -> str:
    """A short name of namespace ``xp`` for reports: "numpy", "cupy" or the module's own name."""
    if is_numpy(xp):
        return "numpy"
    if array_api_compat.is_cupy_namespace(xp):
        return "cupy"
    return xp.__name__.split(".")[-1]


def is_cupy(array) -> bool:
    """True for a CuPy array."""
    return array_api_compat.is_cupy_array(array)


def sparse_matrix(xp: ModuleType, matrix):
    """A scipy sparse matrix for use with arrays of ``xp`` (cupyx's copy on the GPU): for CuPy's
    namespace in any form (``cupy`` itself or ``array_api_compat``'s wrapper), as :func:`ndimage`."""
    if array_api_compat.is_cupy_namespace(xp):
        import cupyx.scipy.sparse

        return cupyx.scipy.sparse.csr_matrix(matrix)
    return matrix


def ndimage(xp: ModuleType) -> ModuleType:
    """``scipy.ndimage`` for numpy arrays, ``cupyx.scipy.ndimage`` (the same functions) for CuPy's."""
    if array_api_compat.is_cupy_namespace(xp):
        import cupyx.scipy.ndimage

        return cupyx.scipy.ndimage
    import scipy.ndimage

    return scipy.ndimage


def ndimage_call(xp: ModuleType, function: str, array, *args, **kwargs):
    """``ndimage(xp).function(array, *args, **kwargs)`` for an ``array`` of namespace ``xp``.

    numpy and CuPy arrays are filtered in place (scipy or cupyx); any other namespace (e.g.
    array_api_strict) has no ndimage, so its array is filtered on the host and comes back to ``xp``.
    Array arguments among ``args`` are moved the same way.
    """
    if is_numpy(xp) or array_api_compat.is_cupy_namespace(xp):
        return getattr(ndimage(xp), function)(array, *args, **kwargs)
    import scipy.ndimage

    host = [to_numpy(a) if _is_array(a) else a for a in args]
    return xp.asarray(getattr(scipy.ndimage, function)(to_numpy(array), *host, **kwargs))


def _is_array(value) -> bool:
    return array_api_compat.is_array_api_obj(value) and not isinstance(value, (int, float, complex))


def fft(xp: ModuleType) -> tuple[ModuleType, ModuleType]:
    """``(namespace, fft module)`` that Fourier filtering of ``xp`` arrays runs in: ``xp`` and its
    ``fft`` extension when it has one, else numpy's (the arrays then go to the host)."""
    if hasattr(xp, "fft"):
        return xp, xp.fft
    host = namespace("cpu")
    return host, host.fft
