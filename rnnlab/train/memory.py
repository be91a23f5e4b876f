"""How much memory a run needs, estimated from its config before anything is allocated.

A run's memory is its parameters with their gradients and optimizer state, plus the larger of
one training batch's forward cache and BPTT workspace and one evaluation chunk's forward cache.
Sizes that cannot fit (``--hidden 100000``, ``--T 10**12``, ``--batch 10**12``) are refused with
the estimate, the memory available and what to lower, instead of failing inside NumPy or
swapping the machine to a halt.

The estimate counts the arrays the stacked recurrent models keep per time step and sequence:
the inputs, the arrays per hidden unit the model's spec declares (``train_arrays_per_unit``,
``eval_arrays_per_unit``; for the Elman RNN four in training: states, pre-activation gradients,
the activation derivative, the gradient from above; and two in evaluation), and three per output
(outputs, their gradient, the loss's temporaries). It is meant to be right within a factor of
about two, which is what refusing an impossible size needs.
"""
from __future__ import annotations

import math
import os

from .. import backend
from ..errors import ConfigError

GiB = 2.0 ** 30
# arrays per parameter: the weights, their gradient, up to two optimizer slots, one temporary
PARAM_COPIES = 5


def estimate_bytes(config, task, spec) -> dict:
    """The memory of each part of a run, in bytes: ``parameters``, ``training batch``,
    ``evaluation chunk``, and ``total`` (parameters + the larger of the other two)."""
    t = config.train
    itemsize = 8 if t["dtype"] == "float64" else 4
    hidden = sum(spec.widths)
    # the steps of the longest sequence: tasks with a layout around a nominal T say so
    T = next((getattr(task, a) for a in ("length", "max_length", "T") if hasattr(task, a)), 1)
    out_steps = 1 if spec.outputs == "last" else T
    n_params = sum(math.prod(s) for s in spec.param_shapes().values())
    parameters = PARAM_COPIES * n_params * itemsize

    def per_sequence(per_hidden):
        return (T * (spec.n_in + per_hidden * hidden) + 3 * out_steps * spec.n_out) * itemsize

    training = t["batch"] * per_sequence(getattr(spec, "train_arrays_per_unit", 4))
    evaluation = (min(t["eval_batch"], t["eval_size"])
                  * per_sequence(getattr(spec, "eval_arrays_per_unit", 2)))
    return {"parameters": parameters, "training batch": training,
            "evaluation chunk": evaluation, "total": parameters + max(training, evaluation)}


def available_bytes() -> float | None:
    """Memory the run can use: free device memory under CuPy, else the host's available memory
    (``MemAvailable`` on Linux); None when it cannot be told."""
    if backend.backend_name() == "cupy":
        try:
            return float(backend.get_xp().cuda.Device().mem_info[0])
        except Exception:  # a CuPy without the query: do not guess
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(config, task, spec, available: float | None = None) -> dict:
    """Raise ConfigError when the estimate exceeds the available memory; return the estimate."""
    need = estimate_bytes(config, task, spec)
    have = available_bytes() if available is None else available
    if have is not None and need["total"] > have:
        parts = "; ".join(f"{k} {v / GiB:.3g} GiB" for k, v in need.items() if k != "total")
        raise ConfigError(f"this run needs about {need['total'] / GiB:.3g} GiB ({parts}) but "
                          f"{have / GiB:.3g} GiB of memory is available; lower model.hidden, "
                          "task.T, train.batch or train.eval_batch")
    return need
