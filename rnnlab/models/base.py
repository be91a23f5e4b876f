"""The model protocol, the model registry, and :func:`make_model`.

Shapes: T steps, B batch, n_in inputs, n_out outputs. Arrays are time-major, ``x : (T, B, n_in)``.

A recurrent model is anything with this shape (checked structurally, no base class needed):

``spec``
    Its structure, readable without running it: ``kind`` (the registry name), ``n_in``,
    ``n_out``, ``outputs`` ("every", "last" or "masked"), ``hidden`` (the widths of its
    recurrent layers) and ``param_shapes()`` (parameter names and shapes in a fixed order).
``params``
    The parameters, a plain ordered dict with the keys of ``spec.param_shapes()``.
``forward(params, x, state=None) -> (y, cache)``
    ``y : (T, B, n_out)`` for outputs "every"/"masked", ``(B, n_out)`` for "last". ``state`` and
    ``cache.final_state`` hold one opaque value per layer (an array ``h`` for an Elman layer; a
    tuple such as ``(h, c)`` or ``(h, memory)`` for gated or memory cells): the trainer only
    carries it from chunk to chunk and stores it in checkpoints, never looks inside.
``backward(params, dy, cache, d_final_state=None, d_hidden=None) -> (grads, d_state)``
    BPTT: ``grads`` has the keys of ``params``. ``d_hidden`` (optional, model-specific, what
    ``structural_damping`` returns) is an extra gradient on the hidden states.
``rop(params, v, cache) -> (r_y, r_hidden)``
    The forward-mode derivative of the outputs along a direction ``v`` (keys of ``params``),
    ``r_y`` shaped like ``y``; ``r_hidden`` is model-specific (what structural damping needs).
``structural_damping(r_hidden, cache, form) -> d_hidden`` (optional)
    What structural damping of strength 1 adds to a Gauss-Newton product's backward
    (:func:`rnnlab.objective.gauss_newton_product`); Hessian-free's ``structural_damping``
    option needs it.
``hidden_gradients(params, dy, cache) -> list of (T, B, H_l)`` (optional)
    dLoss/dh_t for t = 1..T per layer: the gradient reaching each hidden output through the
    readout, the layer above and all later steps, as BPTT computes it, with the rest of step
    t's state held fixed (for a memory cell whose step t computes m_t from h_t, such as the
    NRU, the path through m_t is in the memory's gradient): what the backward of the steps
    after t returns as the h part of its ``d_state`` when a sequence is split after step t.
    The gradient-flow diagnostics (:mod:`rnnlab.train.diagnostics`) plot its norm per step.
``memory(cache) -> list of (T + 1, B, m_l)`` (optional, memory cells such as the NRU)
    The memory vectors m_0..m_T per layer; the diagnostics plot how much each step changes them.

A model class is registered in :data:`MODELS` with its ``options`` (a tuple of
:class:`rnnlab.options.Option`) and a classmethod ``build(n_in, n_out, outputs, *, seed, dtype,
**options)``; :func:`make_model` validates the options through the declaration and builds it.
An optional classmethod ``spec_for(n_in, n_out, outputs, **options)`` returns the spec without
drawing weights; the trainer uses it to refuse a run whose memory cannot exist before
allocating anything (:mod:`rnnlab.train.memory`).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from .. import validate
from ..errors import ConfigError
from ..options import Registry

OUTPUT_MODES = ("every", "last", "masked")

MODELS = Registry("model")


@runtime_checkable
class RecurrentModel(Protocol):
    """What the trainer, the objective and the optimizers need from a model (see the module
    docstring for the meaning of each member)."""

    spec: object
    params: dict

    def forward(self, params: dict, x, state=None): ...

    def backward(self, params: dict, dy, cache, d_final_state=None, d_hidden=None): ...

    def rop(self, params: dict, v: dict, cache): ...


class StackedSpec:
    """What the specs of stacked recurrent models share (a mixin for their frozen dataclasses
    with fields ``n_in``, ``hidden``, ``n_out``, ``bias`` and ``outputs``): the checks of those
    fields and the layer views.

    ``train_arrays_per_unit`` and ``eval_arrays_per_unit`` count the (T, B) arrays per hidden
    unit that a training step (forward cache plus BPTT workspace) and an evaluation forward
    keep; :mod:`rnnlab.train.memory` sizes runs from them, so a cell with more per-step state
    (gates, cell states, memories) declares more.
    """

    train_arrays_per_unit = 4
    eval_arrays_per_unit = 2

    def _check_stack(self) -> None:
        """Validate the shared fields; ``hidden`` becomes a tuple of widths."""
        validate.positive_int("n_in", self.n_in)
        validate.positive_int("n_out", self.n_out)
        hidden = (self.hidden,) if isinstance(self.hidden, int) else tuple(self.hidden)
        if not hidden:
            raise ConfigError("hidden must list at least one layer width; got ()")
        for width in hidden:
            validate.positive_int("hidden", width)
        object.__setattr__(self, "hidden", hidden)
        validate.choice("outputs", self.outputs, OUTPUT_MODES)
        if not isinstance(self.bias, bool):
            raise ConfigError(f"bias must be True or False; got {self.bias!r}")

    @property
    def layers(self) -> int:
        """The number d of hidden layers."""
        return len(self.hidden)

    @property
    def widths(self) -> tuple:
        """The widths of the recurrent layers (the model protocol's name for ``hidden``)."""
        return self.hidden


def check_d_hidden(spec, d_hidden, T: int, B: int) -> None:
    """``d_hidden`` of a backward pass: one (T, B, H_i) float array per layer (or None)."""
    if d_hidden is None:
        return
    if len(d_hidden) != spec.layers:
        raise ConfigError(f"d_hidden must hold one array per layer ({spec.layers}); "
                          f"got {len(d_hidden)}")
    for i, (d, width) in enumerate(zip(d_hidden, spec.hidden)):
        validate.float_array(f"d_hidden[{i}]", d, shape=(T, B, width), finite=False)


def readout_backward(spec, params: dict, dy, top, T: int, B: int):
    """BPTT through the output layer y = W_out h + b_out of a stacked model.

    ``dy`` is (B, n_out) for outputs "last", else (T, B, n_out); ``top`` the top layer's
    hidden states (T + 1, B, H_d). Returns ``(grads, d_from_above, d_last)``: the gradients of
    ``out.W`` (and ``out.b``), and the gradient arriving at the top layer, at every step
    (``d_from_above``, (T, B, H_d)) or only at the last one (``d_last``, (B, H_d)); the other
    is None.
    """
    grads, w_out = {}, params["out.W"]
    if spec.outputs == "last":
        grads["out.W"] = dy.T @ top[T]
        d_from_above, d_last = None, dy @ w_out
    else:
        dy2 = dy.reshape(T * B, spec.n_out)
        grads["out.W"] = dy2.T @ top[1:].reshape(T * B, -1)
        d_from_above, d_last = (dy2 @ w_out).reshape(T, B, -1), None
    if spec.bias:
        grads["out.b"] = dy.reshape(-1, spec.n_out).sum(axis=0)
    return grads, d_from_above, d_last


def readout(spec, params: dict, top, T: int, B: int):
    """y = W_out h_t + b_out of a stacked model from its top layer's hidden states
    ``top : (T + 1, B, H_d)``: (B, n_out) for outputs "last", else (T, B, n_out)."""
    if spec.outputs == "last":
        y = top[T] @ params["out.W"].T
    else:
        y = (top[1:].reshape(T * B, -1) @ params["out.W"].T).reshape(T, B, spec.n_out)
    if spec.bias:
        y += params["out.b"]
    return y


def readout_rop(spec, params: dict, v: dict, top, r_top, T: int, B: int):
    """R y of the output layer along ``v``: W_out R h_t + V_out h_t (+ v_b), from the top
    layer's ``top`` and ``r_top``, both (T + 1, B, H_d); shaped like :func:`readout`'s y."""
    if spec.outputs == "last":
        r_y = top[T] @ v["out.W"].T + r_top[T] @ params["out.W"].T
    else:
        r_y = ((top[1:].reshape(T * B, -1) @ v["out.W"].T
                + r_top[1:].reshape(T * B, -1) @ params["out.W"].T).reshape(T, B, spec.n_out))
    if spec.bias:
        r_y += v["out.b"]
    return r_y


def make_model(kind: str, n_in: int, n_out: int, outputs: str = "last", *, seed: int = 0,
               dtype=None, **options) -> RecurrentModel:
    """A freshly initialised model of registry name ``kind``.

    Parameters
    ----------
    kind : str
        A name in :data:`MODELS` (``"elman"``, ...).
    n_in, n_out : int
        Input and output sizes (a task supplies them).
    outputs : {"every", "last", "masked"}
        Which steps emit an output.
    seed : int
        Seed of the host generator that draws the initial weights.
    dtype : float32 or float64, default the training dtype.
    **options
        The model's own options (``MODELS.options(kind)``); an unknown one is an error listing
        what is allowed.
    """
    cls = MODELS.get(kind)
    validate.positive_int("n_in", n_in)
    validate.positive_int("n_out", n_out)
    validate.choice("outputs", outputs, OUTPUT_MODES)
    resolved = MODELS.resolve(kind, options)
    return cls.build(n_in, n_out, outputs, seed=seed, dtype=dtype, **resolved)


def model_options_text() -> str:
    """Each registered model's options with defaults, one model per line (for ``--help``)."""
    return "\n".join(f"  {name}: " + " ".join(o.describe() for o in MODELS.options(name))
                     for name in MODELS)
