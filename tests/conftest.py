"""Shared test configuration: Hypothesis profiles and the ``xp`` backend fixture.

Hypothesis profiles (pick one with ``HYPOTHESIS_PROFILE``):

``ci`` (default)
    Deterministic: ``derandomize=True``, no example database, no deadline, 25 examples, and the
    reproduction blob printed on failure.
``dev``
    200 random examples per property, for local bug hunting.

Backends: every test runs with NumPy active unless it asks for the ``xp`` fixture, which runs it
once per backend (``numpy`` always, ``cupy`` marked ``gpu`` and skipped with a reason when CuPy or
a visible CUDA device is missing; ``RNNLAB_REQUIRE_GPU=1`` turns that skip into a failure).
"""
from __future__ import annotations

import importlib.util
import os

import pytest
from hypothesis import settings

from rnnlab import backend

settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          print_blob=True, max_examples=25)
settings.register_profile("dev", max_examples=200, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _isolated_backend_state():
    """Run each test with NumPy active and float32 training dtype, and restore the backend's
    module state afterwards, so a test that changes the backend cannot leak into the next."""
    saved = dict(backend._state)
    with backend.use_backend("numpy"):
        yield
    backend._state.clear()
    backend._state.update(saved)


def _cupy_skip_reason() -> str | None:
    """A short reason why the cupy backend cannot run here, or None if it can."""
    reason = backend.cupy_unavailable_reason()
    if reason is None:
        return None
    short = ("cupy not installed" if importlib.util.find_spec("cupy") is None
             else "no CUDA device visible")
    return f"{short} ({reason})"


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module of each backend, made active for the test (``rnnlab.backend.get_xp()``
    returns it). Draw data on the host with NumPy and move it with ``backend.to_device``."""
    if request.param == "cupy":
        reason = _cupy_skip_reason()
        if reason is not None:
            if os.environ.get("RNNLAB_REQUIRE_GPU") == "1":
                pytest.fail(f"RNNLAB_REQUIRE_GPU=1 but the cupy backend is unusable: {reason}")
            pytest.skip(reason)
    with backend.use_backend(request.param) as module:
        yield module
