"""Run a CUDA C kernel's source on the CPU, one thread at a time, to check its arithmetic and its
arguments without a GPU.

The kernel text is compiled as C++ with a few lines that stand in for CUDA: ``__global__`` is
dropped, ``blockIdx``/``blockDim``/``threadIdx`` are globals that a loop sets, and the
round-to-nearest intrinsics (``__fadd_rn`` ...) are plain IEEE float32 operations, compiled
without contraction into fused multiply-adds (which is what the intrinsics guarantee on the GPU).
Arguments are passed as CuPy passes them to a ``RawKernel``: by their numpy type (arrays as
pointers, ``np.int32`` as ``int``, ``np.int64`` as ``long long``, ``np.float32`` as ``float``),
not by the kernel's declaration, so a launch whose arguments do not match the kernel reads
garbage here as it would there.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

_PRELUDE = r"""
#include <math.h>
#define __global__
struct nmosim_dim3 { unsigned int x; };
static nmosim_dim3 blockIdx, blockDim, threadIdx;
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
"""

_ARGUMENT_TYPES = {
    np.dtype(np.int32): ctypes.c_int,
    np.dtype(np.int64): ctypes.c_longlong,
    np.dtype(np.float32): ctypes.c_float,
    np.dtype(np.float64): ctypes.c_double,
}


def compiler() -> str | None:
    """The C++ compiler on the PATH (``c++``, ``g++`` or ``clang++``), or None."""
    return next((path for name in ("c++", "g++", "clang++") if (path := shutil.which(name))), None)


def _parameters(source: str, name: str) -> list[tuple[str, str]]:
    """``(declaration, parameter name)`` of each parameter of kernel ``name`` in ``source``."""
    match = re.search(rf"\b{name}\s*\(([^)]*)\)", source)
    if match is None:
        raise ValueError(f"kernel {name!r} not found in the source")
    declarations = [d.strip() for d in match.group(1).split(",")]
    return [(d, re.findall(r"\w+", d)[-1]) for d in declarations]


def _ctype_argument(value):
    if isinstance(value, np.ndarray):
        if not value.flags.c_contiguous:
            raise ValueError("a kernel argument array is not C-contiguous")
        return ctypes.c_void_p(value.ctypes.data)
    if isinstance(value, np.generic) and value.dtype in _ARGUMENT_TYPES:
        return _ARGUMENT_TYPES[value.dtype](value.item())
    raise TypeError(f"argument of type {type(value).__name__} is not one CuPy passes to a RawKernel")


class HostKernel:
    """A CUDA ``RawKernel`` stand-in: ``kernel(grid, block, args)`` runs every thread of a 1D launch
    in order on the CPU."""

    def __init__(self, source: str, name: str, folder: Path) -> None:
        cxx = compiler()
        if cxx is None:
            raise RuntimeError("no C++ compiler on the PATH")
        parameters = _parameters(source, name)
        names = ", ".join(p for _, p in parameters)
        driver = (
            f'extern "C" void launch_on_host(unsigned int n_blocks, unsigned int n_threads, '
            f"{', '.join(d for d, _ in parameters)}) {{\n"
            "  blockDim.x = n_threads;\n"
            "  for (unsigned int b = 0; b < n_blocks; ++b)\n"
            "    for (unsigned int t = 0; t < n_threads; ++t) {\n"
            f"      blockIdx.x = b; threadIdx.x = t; {name}({names});\n"
            "    }\n}\n"
        )
        text = folder / f"{name}.cpp"
        library = folder / f"{name}.so"
        text.write_text(_PRELUDE + source + driver)
        command = [cxx, "-O1", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC", "-o", str(library)]
        subprocess.run([*command, str(text)], check=True, capture_output=True, text=True)
        self._launch = ctypes.CDLL(str(library)).launch_on_host
        self._launch.restype = None

    def __call__(self, grid: tuple[int], block: tuple[int], args: tuple) -> None:
        (n_blocks,), (n_threads,) = grid, block
        self._launch(ctypes.c_uint(n_blocks), ctypes.c_uint(n_threads), *(_ctype_argument(a) for a in args))
