"""Benchmark configurations, synthetic batches and FLOP counts shared by ``bench_step.py`` and
its worker processes.

Shapes: T steps, B batch, n_in inputs, H hidden units, K outputs; arrays are time-major,
``x : (T, B, n_in)``, as in :mod:`rnnlab.models.elman`.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
# The rnnlab to import: the tree a worker was started with (bench_step.py puts this checkout, or
# the exported --baseline tree, first on PYTHONPATH), else this checkout, ahead of any installed
# copy. Inserting the checkout unconditionally would shadow a --baseline tree, so that "new / old"
# compared the checkout with itself.
_GIVEN = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
          if p and (pathlib.Path(p) / "rnnlab" / "__init__.py").is_file()]
if not _GIVEN and str(REPO) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))


@dataclasses.dataclass(frozen=True)
class Config:
    """One benchmark shape.

    Attributes
    ----------
    name : str
    task : {"adding", "smnist", "charlm"}
        Which synthetic batch to draw (:func:`make_batch`).
    n_in, H, K, B, T : int
        Input size, hidden width, number of outputs (classes for cross-entropy), batch, steps.
    loss : {"mse", "cross_entropy"}
    outputs : {"last", "every"}
        Where the loss reads the network: the last step only, or every step.
    goal : float
        The issue's goal for the paired ratio rnnlab / PyTorch (same thread count).
    """

    name: str
    task: str
    n_in: int
    H: int
    K: int
    B: int
    T: int
    loss: str
    outputs: str
    goal: float

    def flops(self) -> dict:
        """Multiply-add FLOPs (2 per MAC) of one training step, by part; elementwise work and
        the loss are not counted (they are O(T B H), not O(T B H^2))."""
        T, B, H, n_in, K = self.T, self.B, self.H, self.n_in, self.K
        scored = B if self.outputs == "last" else T * B
        return {
            "input projection": 2 * T * B * n_in * H,
            "recurrent forward": 2 * T * B * H * H,
            "head forward": 2 * scored * H * K,
            "head backward (dW_out, dh)": 2 * 2 * scored * H * K,
            "recurrent backward (dh)": 2 * (T - 1) * B * H * H,
            "dW_rec": 2 * T * B * H * H,
            "dW_in": 2 * T * B * n_in * H,
        }

    def total_flops(self) -> int:
        return sum(self.flops().values())

    def numpy_calls_per_step(self) -> int:
        """NumPy calls per time step in rnnlab's Elman loops: forward matmul + add + relu,
        backward multiply + matmul (+ one add of the per-step head gradient for "every")."""
        return 3 + (2 if self.outputs == "last" else 3)


CONFIGS = {c.name: c for c in [
    Config("add-T100", "adding", 2, 100, 1, 50, 100, "mse", "last", 0.6),
    Config("add-T400", "adding", 2, 100, 1, 50, 400, "mse", "last", 0.6),
    Config("add-T750", "adding", 2, 100, 1, 50, 750, "mse", "last", 0.6),
    Config("smnist", "smnist", 1, 100, 10, 64, 784, "cross_entropy", "last", 0.6),
    Config("charlm-H256", "charlm", 50, 256, 50, 32, 50, "cross_entropy", "every", 0.9),
    Config("charlm-H1024", "charlm", 50, 1024, 50, 32, 50, "cross_entropy", "every", 0.9),
]}

#: Initialisation of the recurrent matrix for the timed runs: identity (IRNN, the usual start for
#: a ReLU RNN). It keeps the backpropagated gradient away from float32 subnormals, whose
#: arithmetic is ~100x slower: with "np-rnn" it decays through the subnormal range over sMNIST's
#: 784 steps, and a step took 223 ms in rnnlab and 196 ms in PyTorch instead of 42 and 80.
TIMING_INIT = "identity"
#: SGD learning rate of the timed runs: small, so that the ~60 updates on one batch neither
#: diverge nor turn chaotic (at 1e-5 add-T750's loss jumps around and float32 rounding
#: differences between the engines grow into different trajectories).
TIMING_LR = 1e-6


def make_batch(cfg: Config, dtype, seed: int = 0):
    """A host batch ``(x, targets)`` for ``cfg``.

    adding : x (T, B, 2): values U[0, 1] and two markers; targets (B, 1), the marked sum.
    smnist : x (T, B, 1): random "pixels" U[0, 1]; targets (B,) int64 labels in [0, 10).
    charlm : x (T, B, 50): one-hot random symbols; targets (T, B) int64, the next symbol.
    """
    rng = np.random.default_rng(seed)
    T, B = cfg.T, cfg.B
    if cfg.task == "adding":
        values = rng.random((T, B))
        half = T // 2
        first, second = rng.integers(0, half, B), rng.integers(half, T, B)
        markers = np.zeros((T, B))
        cols = np.arange(B)
        markers[first, cols] = 1
        markers[second, cols] = 1
        x = np.stack([values, markers], axis=-1)
        y = (values[first, cols] + values[second, cols])[:, None].astype(dtype)
    elif cfg.task == "smnist":
        x = rng.random((T, B, 1))
        y = rng.integers(0, cfg.K, B).astype(np.int64)
    elif cfg.task == "charlm":
        symbols = rng.integers(0, cfg.n_in, (T + 1, B))
        x = np.eye(cfg.n_in)[symbols[:-1]]
        y = symbols[1:].astype(np.int64)
    else:
        raise ValueError(f"unknown task {cfg.task!r}")
    return np.ascontiguousarray(x, dtype=dtype), y


def make_rnnlab_model(cfg: Config, dtype, init: str = TIMING_INIT, seed: int = 0,
                      model: str = "elman"):
    """The rnnlab model for ``cfg`` (also the source of PyTorch's initial weights): the Elman
    ReLU RNN, or another registered model (``model``) of width ``cfg.H`` with its timing
    options (:func:`make_cell_model`)."""
    if model != "elman":
        return make_cell_model(cfg, model, dtype, seed=seed)
    from rnnlab.models import ElmanRNN
    return ElmanRNN.create(cfg.n_in, cfg.H, cfg.K, activation="relu", outputs=cfg.outputs,
                           init=init, seed=seed, dtype=dtype)


#: Options for the timed runs of the gated cells, by registry name (the others run with their
#: defaults). Like TIMING_INIT for the Elman RNN, they keep BPTT's gradient out of the float32
#: subnormal range over 400-784 steps, where each operation on a subnormal costs ~100x: keep
#: gates of about 0.95 (bias 3). Measured with the worker's check after warm-up, with the
#: defaults: the GRU (no gate bias) had 1.19 million subnormal dLoss/dh_t values at sMNIST and
#: 353 thousand at add-T400, the mLSTM (forget bias 1) 375 thousand at sMNIST, the LSTM
#: (forget bias 1) none in dLoss/dh_t, but its dLoss/dc_t, which the check cannot see, decays as
#: the product of f_t ~ 0.73. The GRU has no such option: its update gate z (the keep gate of
#: h = (1 - z) n + z h_prev) gets the bias after building (:func:`make_cell_model`).
CELL_TIMING_OPTIONS = {"lstm": {"forget_bias": 3.0}, "mlstm": {"forget_bias": 3.0}}
#: (gate block, bias) set after building, for cells whose options have no keep-gate bias.
CELL_TIMING_BIAS = {"gru": (1, 3.0)}


def make_cell_model(cfg: Config, model: str, dtype, seed: int = 0):
    """A registered rnnlab model ``model`` (any registry name) of width ``cfg.H`` for ``cfg``,
    built through ``make_model`` with :data:`CELL_TIMING_OPTIONS`; one layer."""
    from rnnlab import backend
    from rnnlab.models import make_model
    options = dict(CELL_TIMING_OPTIONS.get(model, {}))
    m = make_model(model, cfg.n_in, cfg.K, cfg.outputs, seed=seed, dtype=dtype, hidden=cfg.H,
                   **options)
    if model in CELL_TIMING_BIAS and "layer1.b" in m.params:
        block, value = CELL_TIMING_BIAS[model]
        b = backend.to_host(m.params["layer1.b"]).copy()
        b[block * cfg.H:(block + 1) * cfg.H] = value
        m.params["layer1.b"] = backend.to_device(b, dtype=dtype)
    return m
