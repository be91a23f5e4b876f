"""The one place that chooses the array module (NumPy on the CPU, CuPy on a GPU).

Compute code never imports numpy for array math; it asks for the module with :func:`get_xp`::

    xp = backend.get_xp()
    h = xp.maximum(z, 0)

The choice comes, in order of precedence, from :func:`use_backend` (a context manager that
restores the previous choice), :func:`set_backend`, and the environment variable
``RNNLAB_BACKEND`` (read once, at the first call). CuPy is imported lazily, only when asked for.

Arrays cross between host and device only through :func:`to_host` and :func:`to_device`.

Dtype policy: training runs in ``float32`` by default (:func:`train_dtype`), checks such as
finite-difference gradient checks in ``float64`` (:data:`CHECK_DTYPE`).
"""
from __future__ import annotations

import contextlib
import os

import numpy

from .errors import BackendError, ConfigError

BACKENDS = ("numpy", "cupy")
CHECK_DTYPE = "float64"
_DTYPES = ("float32", "float64")

_state = {"name": None, "train_dtype": "float32"}


def _validate_name(name):
    if name not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}; got {name!r}")
    return name


def _import_cupy():
    """Import CuPy and check that a CUDA device is visible, or raise a BackendError saying why."""
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
    return cupy


def _module(name):
    return numpy if name == "numpy" else _import_cupy()


def backend_name() -> str:
    """The active backend's name, ``"numpy"`` or ``"cupy"``."""
    if _state["name"] is None:
        name = os.environ.get("RNNLAB_BACKEND", "numpy").strip().lower() or "numpy"
        _validate_name(name)
        _module(name)  # fail now, with the clear message, rather than at the first array op
        _state["name"] = name
    return _state["name"]


def get_xp():
    """The active array module (``numpy`` or ``cupy``)."""
    return _module(backend_name())


def set_backend(name: str) -> None:
    """Make ``name`` (``"numpy"`` or ``"cupy"``) the active backend for the whole process."""
    _validate_name(name)
    _module(name)
    _state["name"] = name


@contextlib.contextmanager
def use_backend(name: str):
    """Run a block with ``name`` as the active backend, then restore the previous one."""
    previous = _state["name"]
    set_backend(name)
    try:
        yield get_xp()
    finally:
        _state["name"] = previous


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
def array_module_of(a):
    """The module (numpy or cupy) that owns array ``a``."""
    if type(a).__module__.split(".")[0] == "cupy":
        return _import_cupy()
    return numpy


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
