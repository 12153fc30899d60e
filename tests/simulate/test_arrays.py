"""The choice of array namespace: CuPy only where its GPU libraries load (checked with stand-in
modules, no GPU needed)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from nmosim.simulate import arrays


def _stand_in_cupy(monkeypatch, devices: int, cufft_loads: bool) -> None:
    """A ``cupy`` that sees ``devices`` GPUs and makes numpy arrays; its cuFFT module fails to
    import unless ``cufft_loads`` (as when another library took cuFFT's soname first)."""
    cupy = types.ModuleType("cupy")
    cuda = types.ModuleType("cupy.cuda")
    cuda.runtime = types.SimpleNamespace(getDeviceCount=lambda: devices)
    cupy.cuda = cuda
    cupy.empty = np.empty
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupy.cuda", cuda)
    cufft = types.ModuleType("cupy.cuda.cufft") if cufft_loads else None  # None: its import fails
    monkeypatch.setitem(sys.modules, "cupy.cuda.cufft", cufft)
    if cufft is not None:
        cuda.cufft = cufft


@pytest.fixture
def fresh_choice():
    arrays._cupy.cache_clear()
    yield
    arrays._cupy.cache_clear()


def test_a_cupy_whose_cufft_does_not_load_is_not_used(monkeypatch, fresh_choice):
    _stand_in_cupy(monkeypatch, devices=1, cufft_loads=False)
    with pytest.warns(RuntimeWarning, match="cannot load cuFFT"):
        assert arrays._cupy() is None
    assert not arrays.has_gpu_arrays()
    assert arrays.is_numpy(arrays.namespace("cuda"))


def test_a_cupy_that_loads_and_sees_a_gpu_is_used(monkeypatch, fresh_choice):
    _stand_in_cupy(monkeypatch, devices=1, cufft_loads=True)
    assert arrays._cupy() is not None and arrays.has_gpu_arrays()


def test_a_cupy_without_a_gpu_is_not_used(monkeypatch, fresh_choice):
    _stand_in_cupy(monkeypatch, devices=0, cufft_loads=True)
    assert arrays._cupy() is None
