"""The backend module: choosing NumPy or CuPy, crossings, seeds and the dtype policy.

CuPy's absence and a CuPy without a GPU are simulated, so these run on any machine: a ``None``
entry in ``sys.modules`` makes ``import cupy`` raise ImportError, and a fake module stands in for a
CuPy whose device query returns 0 or fails.
"""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from rnnlab import BackendError, ConfigError, backend
from rnnlab.models import ElmanRNN


def _fake_cupy(device_count=1, error=None):
    """A stand-in ``cupy`` module whose ``cuda.runtime.getDeviceCount`` returns ``device_count``
    or raises ``error``."""
    def get_device_count():
        if error is not None:
            raise error
        return device_count
    module = types.ModuleType("cupy")
    module.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(
        getDeviceCount=get_device_count))
    return module


@pytest.fixture
def no_cupy(monkeypatch):
    """Make ``import cupy`` fail, whether or not CuPy is installed."""
    monkeypatch.setitem(sys.modules, "cupy", None)


@pytest.fixture
def fresh(monkeypatch):
    """Forget the chosen backend (and leave the test's use_backend block), so the next call
    reads RNNLAB_BACKEND again."""
    monkeypatch.setitem(backend._state, "name", None)
    monkeypatch.setitem(backend._state, "module", None)
    monkeypatch.delenv("RNNLAB_BACKEND", raising=False)
    token = backend._ACTIVE.set(None)
    yield
    backend._ACTIVE.reset(token)


# ----------------------------------------------------------------------------- RNNLAB_BACKEND
def test_default_without_env_is_numpy(fresh):
    assert backend.backend_name() == "numpy"
    assert backend.get_xp() is np


@pytest.mark.parametrize("value", ["numpy", " NumPy ", "NUMPY", ""])
def test_env_var_numpy_spellings(fresh, monkeypatch, value):
    monkeypatch.setenv("RNNLAB_BACKEND", value)
    assert backend.backend_name() == "numpy"
    assert backend.get_xp() is np


def test_env_var_is_read_once(fresh, monkeypatch):
    monkeypatch.setenv("RNNLAB_BACKEND", "numpy")
    assert backend.backend_name() == "numpy"
    monkeypatch.setenv("RNNLAB_BACKEND", "bogus")  # too late: the choice is made
    assert backend.backend_name() == "numpy"


def test_env_var_unknown_name(fresh, monkeypatch):
    monkeypatch.setenv("RNNLAB_BACKEND", "jax")
    with pytest.raises(ConfigError, match=r"backend must be one of numpy, cupy; got 'jax'"):
        backend.get_xp()
    assert backend._state["name"] is None  # nothing half-chosen


def test_env_var_cupy_without_cupy(fresh, monkeypatch, no_cupy):
    monkeypatch.setenv("RNNLAB_BACKEND", "cupy")
    with pytest.raises(BackendError, match=r"pip install rnnlab\[gpu\]"):
        backend.backend_name()
    assert backend._state["name"] is None


def test_env_var_cupy_with_fake_gpu(fresh, monkeypatch):
    fake = _fake_cupy(device_count=1)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setenv("RNNLAB_BACKEND", "cupy")
    assert backend.backend_name() == "cupy"
    assert backend.get_xp() is fake


# ----------------------------------------------------------------------------- set/use_backend
def test_set_backend_numpy():
    backend.set_backend("numpy")
    assert backend.backend_name() == "numpy"
    assert backend.get_xp() is np


def test_set_backend_unknown_name_keeps_choice():
    backend.set_backend("numpy")
    with pytest.raises(ConfigError, match=r"backend must be one of numpy, cupy; got 'torch'"):
        backend.set_backend("torch")
    assert backend.backend_name() == "numpy"


def test_unknown_backend_error_is_a_value_error():
    with pytest.raises(ValueError):
        backend.set_backend("NumPy")  # names are exact in the API (only the env var is lenient)


def test_use_backend_switches_and_restores(monkeypatch):
    fake = _fake_cupy(device_count=2)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    backend.set_backend("numpy")
    with backend.use_backend("cupy") as mod:
        assert mod is fake
        assert backend.backend_name() == "cupy"
        with backend.use_backend("numpy") as inner:
            assert inner is np and backend.get_xp() is np
        assert backend.get_xp() is fake
    assert backend.backend_name() == "numpy"


def test_use_backend_restores_on_exception(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(device_count=1))
    backend.set_backend("numpy")
    with pytest.raises(KeyError, match="boom"):
        with backend.use_backend("cupy"):
            assert backend.backend_name() == "cupy"
            raise KeyError("boom")
    assert backend.backend_name() == "numpy"


def test_use_backend_restores_unset_state(fresh, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(device_count=1))
    with backend.use_backend("cupy"):
        pass
    assert backend._state["name"] is None  # back to "not chosen yet", env var still in charge


def test_use_backend_is_local_to_a_thread(monkeypatch):
    """A use_backend block in one thread does not change the backend another thread sees."""
    import threading
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(device_count=1))
    backend.set_backend("numpy")
    inside, seen = threading.Event(), {}

    def worker():
        inside.wait(5)
        seen["name"] = backend.backend_name()

    thread = threading.Thread(target=worker)
    thread.start()
    with backend.use_backend("cupy"):
        inside.set()
        thread.join(5)
        assert backend.backend_name() == "cupy"
    assert seen["name"] == "numpy"


def test_device_check_runs_once_per_module(monkeypatch):
    calls = []
    fake = _fake_cupy(device_count=1)
    fake.cuda.runtime.getDeviceCount = lambda: calls.append(1) or 1
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with backend.use_backend("cupy"):
        for _ in range(100):
            assert backend.get_xp() is fake
    with backend.use_backend("cupy"):
        pass
    assert len(calls) == 1


def test_use_backend_unknown_name_changes_nothing():
    backend.set_backend("numpy")
    with pytest.raises(ConfigError, match="got 'gpu'"):
        with backend.use_backend("gpu"):
            pytest.fail("the block must not run")  # pragma: no cover
    assert backend.backend_name() == "numpy"


# ----------------------------------------------------------------------------- CuPy unusable
def test_cupy_missing_message_says_what_to_install(no_cupy):
    with pytest.raises(BackendError) as info:
        backend.set_backend("cupy")
    message = str(info.value)
    assert "pip install rnnlab[gpu]" in message
    assert "cupy-cuda12x" in message
    assert "RNNLAB_BACKEND=numpy" in message
    assert isinstance(info.value.__cause__, ImportError)
    assert backend.backend_name() == "numpy"
    assert backend.available_backends() == ["numpy"]
    assert backend.cupy_unavailable_reason() == message


def test_cupy_without_visible_device(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(device_count=0))
    with pytest.raises(BackendError, match="needs a visible CUDA GPU and none is visible"):
        backend.set_backend("cupy")
    assert backend.backend_name() == "numpy"
    assert backend.available_backends() == ["numpy"]
    assert "CUDA_VISIBLE_DEVICES" in backend.cupy_unavailable_reason()


def test_cupy_device_query_fails(monkeypatch):
    error = RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(error=error))
    with pytest.raises(BackendError, match="CUDA driver version is insufficient") as info:
        backend.set_backend("cupy")
    assert "needs a visible CUDA GPU" in str(info.value)
    assert info.value.__cause__ is error
    assert backend.available_backends() == ["numpy"]


def test_cupy_with_fake_device_is_available(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(device_count=1))
    assert backend.available_backends() == ["numpy", "cupy"]
    assert backend.cupy_unavailable_reason() is None


def test_backend_error_is_runtime_error(no_cupy):
    with pytest.raises(RuntimeError):
        backend.set_backend("cupy")


# ----------------------------------------------------------------------------- crossings
def test_to_device_to_host_round_trip(xp):
    host = np.random.default_rng(0).standard_normal((3, 4))
    dev = backend.to_device(host)
    assert isinstance(dev, xp.ndarray)
    assert dev.dtype == np.float64
    back = backend.to_host(dev)
    assert type(back) is np.ndarray
    np.testing.assert_array_equal(back, host)


def test_to_device_casts(xp):
    dev = backend.to_device(np.arange(5), dtype="float32")
    assert dev.dtype == np.float32
    np.testing.assert_array_equal(backend.to_host(dev), np.arange(5, dtype=np.float32))


def test_to_host_accepts_lists():
    out = backend.to_host([1.0, 2.0])
    assert type(out) is np.ndarray and out.tolist() == [1.0, 2.0]


def test_check_same_namespace_accepts_active_backend(xp):
    a = backend.to_device(np.zeros(2))
    backend.check_same_namespace(a=a, b=a, c=None)  # no error


class _FakeCupyArray:
    """Something whose type lives in a ``cupy`` module, as a real cupy.ndarray's does."""


_FakeCupyArray.__module__ = "cupy._core.core"


def test_check_same_namespace_names_the_argument_and_both_backends():
    with pytest.raises(ConfigError) as info:
        backend.check_same_namespace(x=np.zeros(2), weights=_FakeCupyArray())
    message = str(info.value)
    assert "weights is a cupy array but the active backend is numpy" in message
    assert "to_host" in message
    assert isinstance(info.value, ValueError)


def test_check_same_namespace_host_array_under_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(device_count=1))
    with backend.use_backend("cupy"):
        with pytest.raises(ConfigError, match="x is a numpy array but the active backend is "
                                              "cupy; move it with rnnlab.backend.to_device"):
            backend.check_same_namespace(x=np.zeros(2))


# ----------------------------------------------------------------------------- seeds
def test_derive_seed_is_deterministic_and_sensitive_to_every_key():
    a = backend.derive_seed(7, 1, 2)
    assert a == backend.derive_seed(7, 1, 2)
    assert isinstance(a, int) and 0 <= a < 2**32
    others = {backend.derive_seed(8, 1, 2), backend.derive_seed(7, 2, 2),
              backend.derive_seed(7, 1, 3), backend.derive_seed(7, 2, 1),
              backend.derive_seed(7, 1), backend.derive_seed(7)}
    assert a not in others
    assert len(others) == 6  # order and number of keys matter too


def test_derive_seed_spreads_consecutive_steps():
    seeds = {backend.derive_seed(0, 0, step) for step in range(1000)}
    assert len(seeds) == 1000  # 1000 draws from 2^32 collide with probability ~1e-4


def test_derive_seed_accepts_numpy_integers():
    assert backend.derive_seed(np.int64(3), np.int32(4)) == backend.derive_seed(3, 4)


def test_rng_same_seed_same_stream(xp):
    a = backend.to_host(backend.rng(5).random(8))
    b = backend.to_host(backend.rng(5).random(8))
    c = backend.to_host(backend.rng(6).random(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_host_rng_is_numpy_generator():
    assert isinstance(backend.host_rng(3), np.random.Generator)
    np.testing.assert_array_equal(backend.host_rng(3).random(4), backend.host_rng(3).random(4))


# ----------------------------------------------------------------------------- dtypes
def test_train_dtype_default_is_float32():
    assert backend.train_dtype() == np.float32
    assert backend.resolve_dtype(None) == np.float32
    assert backend.CHECK_DTYPE == "float64"
    model = ElmanRNN.create(2, 3, 1)
    assert all(p.dtype == np.float32 for p in model.params.values())


def test_set_train_dtype_float64():
    backend.set_train_dtype("float64")
    assert backend.train_dtype() == np.float64
    assert backend.resolve_dtype(None) == np.float64
    assert ElmanRNN.create(2, 3, 1).params["out.W"].dtype == np.float64
    backend.set_train_dtype("float32")
    assert backend.train_dtype() == np.float32


@pytest.mark.parametrize("name", ["float16", "int32", "double", ""])
def test_set_train_dtype_rejects(name):
    with pytest.raises(ConfigError, match=rf"dtype must be one of float32, float64; got '{name}'"):
        backend.set_train_dtype(name)
    assert backend.train_dtype() == np.float32


def test_resolve_dtype():
    assert backend.resolve_dtype("float64") == np.float64
    assert backend.resolve_dtype(np.float32) == np.float32
    with pytest.raises(ConfigError, match="got 'int64'"):
        backend.resolve_dtype(np.int64)
    with pytest.raises(ConfigError, match="got 'float16'"):
        backend.resolve_dtype("float16")
