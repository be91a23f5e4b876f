"""The one place that chooses the array module (NumPy on the CPU, CuPy on a GPU).

Compute code never imports numpy for array math; it asks for the module with :func:`get_xp`::

    xp = backend.get_xp()
    h = xp.maximum(z, 0)

The choice comes, in order of precedence, from :func:`use_backend` (a context manager, local to
the thread or asyncio task, that restores the previous choice), :func:`set_backend` (the
process-wide default), and the environment variable ``RNNLAB_BACKEND`` (read once, at the first
call). CuPy is imported lazily, only when asked for, and its device check runs once.

Arrays cross between host and device only through :func:`to_host` and :func:`to_device`.

Dtype policy: training runs in ``float32`` by default (:func:`train_dtype`), checks such as
finite-difference gradient checks in ``float64`` (:data:`CHECK_DTYPE`).
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import sys

import numpy

from .errors import BackendError, ConfigError

BACKENDS = ("numpy", "cupy")
CHECK_DTYPE = "float64"
_DTYPES = ("float32", "float64")

# The process-wide default (RNNLAB_BACKEND or set_backend) and the training dtype.
_state = {"name": None, "module": None, "train_dtype": "float32"}
# A use_backend block's (name, module), local to the thread or asyncio task that opened it.
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("rnnlab_backend", default=None)
# CuPy, once checked: (the module object it was checked for, the module).
_cupy_checked: list = [None, None]


def _validate_name(name):
    if name not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}; got {name!r}")
    return name


def _import_cupy():
    """Import CuPy and check that a CUDA device is visible, or raise a BackendError saying why.

    The device check runs once per imported CuPy module (it costs a driver call), not on every
    :func:`get_xp`.
    """
    loaded = sys.modules.get("cupy")
    if loaded is not None and _cupy_checked[0] is loaded:
        return _cupy_checked[1]
    try:
        import cupy
    except ImportError as exc:
        raise BackendError(
            "backend 'cupy' needs CuPy: install it with `pip install rnnlab[gpu]` "
            "(cupy-cuda12x) or `pip install rnnlab[gpu-cuda13]`, or set RNNLAB_BACKEND=numpy"
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken: CuPy raises its own runtime errors
        raise BackendError(
            f"backend 'cupy' needs a visible CUDA GPU, but CuPy could not query one ({exc}); "
            "check the driver and CUDA_VISIBLE_DEVICES, or set RNNLAB_BACKEND=numpy"
        ) from exc
    if count < 1:
        raise BackendError(
            "backend 'cupy' needs a visible CUDA GPU and none is visible; "
            "check CUDA_VISIBLE_DEVICES, or set RNNLAB_BACKEND=numpy"
        )
    _cupy_checked[:] = [cupy, cupy]
    return cupy


def _module(name):
    return numpy if name == "numpy" else _import_cupy()


def _default():
    """The process-wide (name, module), read from RNNLAB_BACKEND at the first call."""
    if _state["name"] is None:
        name = os.environ.get("RNNLAB_BACKEND", "numpy").strip().lower() or "numpy"
        _validate_name(name)
        module = _module(name)  # fail now, with the clear message, not at the first array op
        _state.update(name=name, module=module)
    elif _state["module"] is None:
        _state["module"] = _module(_state["name"])
    return _state["name"], _state["module"]


def backend_name() -> str:
    """The active backend's name, ``"numpy"`` or ``"cupy"``."""
    active = _ACTIVE.get()
    return active[0] if active is not None else _default()[0]


def get_xp():
    """The active array module (``numpy`` or ``cupy``): the innermost :func:`use_backend` block
    of this thread or task, else the process-wide default."""
    active = _ACTIVE.get()
    return active[1] if active is not None else _default()[1]


def set_backend(name: str) -> None:
    """Make ``name`` (``"numpy"`` or ``"cupy"``) the process-wide default backend (what code
    outside any :func:`use_backend` block uses, in every thread)."""
    _validate_name(name)
    module = _module(name)
    _state.update(name=name, module=module)


@contextlib.contextmanager
def use_backend(name: str):
    """Run a block with ``name`` as the active backend, then restore the previous one.

    The choice is context-local (:mod:`contextvars`): other threads, and asyncio tasks started
    outside the block, keep theirs, so two sweep workers in threads can use different backends.
    """
    _validate_name(name)
    token = _ACTIVE.set((name, _module(name)))
    try:
        yield _ACTIVE.get()[1]
    finally:
        _ACTIVE.reset(token)


def available_backends() -> list[str]:
    """The backends that work on this machine (``numpy`` always; ``cupy`` with a visible GPU)."""
    names = ["numpy"]
    try:
        _import_cupy()
        names.append("cupy")
    except BackendError:
        pass
    return names


def cupy_unavailable_reason() -> str | None:
    """Why CuPy cannot be used here, or ``None`` if it can (for test skip messages)."""
    try:
        _import_cupy()
    except BackendError as exc:
        return str(exc)
    return None


# ----------------------------------------------------------------------------- dtypes
def train_dtype():
    """The dtype training uses (``float32`` unless changed by :func:`set_train_dtype`)."""
    return numpy.dtype(_state["train_dtype"])


def set_train_dtype(name: str) -> None:
    """Set the training dtype to ``"float32"`` or ``"float64"``."""
    if name not in _DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}; got {name!r}")
    _state["train_dtype"] = name


def resolve_dtype(dtype=None):
    """``dtype`` as a NumPy dtype, defaulting to the training dtype; only float32/float64."""
    if dtype is None:
        return train_dtype()
    dt = numpy.dtype(dtype)
    if dt.name not in _DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(_DTYPES)}; got {dt.name!r}")
    return dt


# ----------------------------------------------------------------------------- crossings
def to_host(a):
    """A NumPy copy (or view) of ``a``, wherever it lives."""
    if type(a).__module__.split(".")[0] == "cupy":
        return a.get()
    return numpy.asarray(a)


def to_device(a, dtype=None):
    """``a`` as an array of the active backend (copied to the GPU under CuPy)."""
    xp = get_xp()
    return xp.asarray(a, dtype=dtype)


def check_same_namespace(**arrays):
    """Raise ConfigError if the named arrays do not all belong to the active backend."""
    want = backend_name()
    for name, a in arrays.items():
        if a is None:
            continue
        have = "cupy" if type(a).__module__.split(".")[0] == "cupy" else "numpy"
        if have != want:
            raise ConfigError(
                f"{name} is a {have} array but the active backend is {want}; "
                f"move it with rnnlab.backend.{'to_device' if want == 'cupy' else 'to_host'}"
            )


# ----------------------------------------------------------------------------- random numbers
def derive_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed derived from ``seed`` and integer ``keys`` (e.g. a step number).

    Runs draw the batch of step ``s`` from ``rng(derive_seed(seed, stream, s))``, so a resumed
    run sees exactly the batches an uninterrupted run would, with no generator state to save.
    """
    return int(numpy.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(1)[0])


def rng(seed: int):
    """A seeded random generator of the active backend (``numpy.random.Generator`` or CuPy's).

    NumPy's and CuPy's streams differ for the same seed; parity tests therefore draw on the host
    and copy with :func:`to_device`.
    """
    return get_xp().random.default_rng(int(seed))


def host_rng(seed: int) -> numpy.random.Generator:
    """A seeded NumPy generator (parameter initialisation draws here on every backend)."""
    return numpy.random.default_rng(int(seed))


def quiet_float_errors():
    """A context manager that silences NumPy's overflow/invalid warnings (CuPy never warns).

    The trainer uses it around an update because it detects non-finite losses and gradient
    norms itself and stops with a clear message.
    """
    return numpy.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore")
