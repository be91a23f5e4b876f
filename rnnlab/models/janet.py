"""Stacked JANET (a forget-gate-only LSTM) with hand-written forward, BPTT and R-op.

Shapes: T steps, B batch, n_in inputs, H_l hidden units in layer l (l = 1..d), n_out outputs.
Arrays are time-major: ``x : (T, B, n_in)``.

Forward (van der Westhuizen & Lasenby 2018, "The unreasonable effectiveness of the forget
gate", arXiv 1804.04849, Section 3, the "JANET")::

    h_t^0 = x_t,   h_0^l = state^l (zeros unless given)
    z_t   = W_in^l h_t^{l-1} + W_rec^l h_{t-1}^l + b^l              (2 H_l,) gate-major: f c
    s_t   = z_t[f]
    c~_t  = tanh(z_t[c])
    c_t   = sigma(s_t) * c_{t-1} + (1 - sigma(s_t - beta)) * c~_t
    h_t   = c_t
    y_t   = W_out h_t^d + b_out

with sigma(z) = 0.5 tanh(z / 2) + 0.5 and ``beta`` an option (default 1, the paper's value).
The input gate is tied to the forget gate, shifted by beta so that the cell can accumulate
(sigma(s) + 1 - sigma(s - beta) > 1 for beta > 0). Since h_t = c_t the state of a layer is one
array h (B, H_l), like the Elman model's. 1 - sigma(s - beta) = sigma(beta - s) is what is
computed and cached (``u``).

Weights are stored (out, in), gate-major and contiguous: ``W_in^l : (2 H_l, H_{l-1})``,
``W_rec^l : (2 H_l, H_l)``, ``b^l : (2 H_l,)``, rows ``[0, H)`` the forget gate s, ``[H, 2H)``
the candidate c~, so the input projection of all steps is one GEMM and each step one
(B, H) @ (H, 2H) GEMM.

Initialisation (host-side, seeded, float64, then cast and moved): input blocks Glorot-uniform
(fan_in H_{l-1}, fan_out H_l), recurrent blocks Haar-orthogonal (Saxe et al. 2014), output
Glorot-uniform, ``b_c = 0``, and the forget bias

* ``init="chrono"`` (the paper's JANET; Tallec & Ollivier 2018, Section 5):
  ``b_f ~ log(U[1, chrono_T - 1])`` per unit, which needs ``chrono_T``, the longest dependency
  T_max to expect (e.g. the task's T);
* ``init="orthogonal"`` (the default): ``b_f = forget_bias`` (default 1). A model cannot know
  its task's T_max, so "chrono" cannot be a default that builds without being told one; the
  options are the LSTM's (``init``, ``forget_bias``, ``chrono_T``, ``bias``), so sweeps set
  them alike.

Paper and authors' code (``JosvanderWesthuizen/janet``, ``aux_code/rnn_cells.py``,
``CustomLSTMCell`` with ``forget_only=True``) differ in these ways:

* the code writes the input gate as ``sigmoid(1 - f)``, i.e. beta = 1 hard-coded; it is the
  paper's 1 - sigma(s - beta) at beta = 1 (1 - sigma(x) = sigma(-x)), so the function agrees;
* the code's chrono draws ``log(U[1, t_max])`` with t_max the task's maximum sequence length
  (``model_file.py``), not U[1, T_max - 1] as in Tallec & Ollivier; rnnlab follows Tallec &
  Ollivier and the LSTM's chrono (pass ``chrono_T = T + 1`` to reproduce the code's range);
* the code leaves W_xh and W_hh at TensorFlow's default ``glorot_uniform`` over the
  concatenated (n_in, 2H) and (H, 2H) matrices; rnnlab draws Glorot per gate block for W_in
  and orthogonal recurrent blocks, as its LSTM and GRU do (the paper's own text on the weight
  initialisation was not checked here);
* without chrono the code sets b_f = 1 (``bias_initializer``), which is rnnlab's
  ``init="orthogonal"`` default with ``forget_bias = 1``.

R-op (forward-mode J v, the initial state held constant)::

    R c_t = (sigma'(s_t) c_{t-1} - sigma'(s_t - beta) c~_t) R s_t + sigma(s_t) R c_{t-1}
            + (1 - sigma(s_t - beta)) (1 - c~_t^2) R z_t[c]

and R h_t = R c_t; ``r_hidden`` is R h per layer, (T + 1, B, H_l), so structural damping's
``"hidden"`` form (the penalty 1/2 sum_t ||R h_t||^2) applies; Martens & Sutskever 2011's
``"matching"`` form is defined for a single hidden nonlinearity and is refused.
"""
from __future__ import annotations

import dataclasses
import math

from .. import backend, validate
from ..errors import ConfigError
from ..options import Option
from . import init as inits
from .base import check_d_hidden, readout, readout_backward, readout_rop
from .elman import _check_hidden, _parse_hidden
from .gru import GRU
from .lstm import LSTM, LSTM_INITS, LSTMSpec, _sigmoid_

GATES = 2  # f, c
JANET_INITS = LSTM_INITS  # ("orthogonal", "chrono")


@dataclasses.dataclass(frozen=True)
class JANETSpec(LSTMSpec):
    """The structure of a stacked JANET (fields as :class:`rnnlab.models.lstm.LSTMSpec`, and
    ``beta``, the shift of the input gate's pre-activation)."""

    beta: float = 1.0

    kind = "janet"
    gates = GATES
    # (T, B) arrays per hidden unit (rnnlab.train.memory): the forward keeps h, the activated
    # [f, c~] (written over the input projection) and u = 1 - sigma(s - beta); BPTT adds dz
    # (2 per unit) and the gradient from the layer above
    train_arrays_per_unit = 7
    eval_arrays_per_unit = 4

    def __post_init__(self):
        self._check_stack()
        if (isinstance(self.beta, bool) or not isinstance(self.beta, (int, float))
                or not math.isfinite(self.beta)):
            raise ConfigError(f"beta must be a finite number; got {self.beta!r}")
        object.__setattr__(self, "beta", float(self.beta))


@dataclasses.dataclass(frozen=True)
class JANETCache:
    """What the forward pass keeps for BPTT and the R-op.

    Attributes
    ----------
    x : (T, B, n_in)
    h : list of d arrays (T + 1, B, H_l)
        Hidden states (= cell states) per layer; ``h[l][0]`` is the initial state.
    gates : list of d arrays (T, B, 2 H_l)
        ``[sigma(s_t), c~_t]`` of steps 1..T.
    u : list of d arrays (T, B, H_l)
        ``1 - sigma(s_t - beta)`` of steps 1..T.
    """

    x: object
    h: list
    gates: list
    u: list

    @property
    def final_state(self) -> list:
        """``[(B, H_l)]`` per layer: the next chunk's ``state``."""
        return [h[-1].copy() for h in self.h]


# ---------------------------------------------------------------------- step functions
def janet_step(z, c_prev, u, c_next, beta):
    """One JANET step from the full pre-activation ``z : (B, 2H)`` ([s, z_c], input and
    recurrent terms and bias summed), overwritten in place by the activated gates
    ``[sigma(s), c~]``; ``u : (B, H)`` receives 1 - sigma(s - beta) = sigma(beta - s) and
    ``c_next : (B, H)`` the cell (= hidden) state c_t."""
    xp = backend.get_xp()
    H = c_prev.shape[-1]
    s, cand = z[:, :H], z[:, H:]
    xp.subtract(beta, s, out=u)
    _sigmoid_(u)
    _sigmoid_(s)
    xp.tanh(cand, out=cand)
    xp.multiply(s, c_prev, out=c_next)
    c_next += u * cand


def janet_step_backward(dc, gates, u, c_prev, dz):
    """BPTT through one step: from dLoss/dc_t ``dc : (B, H)`` (= dLoss/dh_t, updated in place
    to the part of dLoss/dc_{t-1} through the forget gate, dc * sigma(s_t)), write dLoss/dz_t
    into ``dz : (B, 2H)``. The caller adds dz_t @ W_rec, the part through the recurrent
    weights."""
    H = dc.shape[-1]
    f, cand = gates[:, :H], gates[:, H:]
    # ds: through the forget gate's sigma(s) and the input gate's 1 - sigma(s - beta) = u,
    # whose derivative with respect to s is -u (1 - u)
    dz[:, :H] = dc * (c_prev * f * (1 - f) - cand * u * (1 - u))
    dz[:, H:] = dc * u * (1 - cand * cand)
    dc *= f


def janet_step_rop(rz, r_c, gates, u, c_prev):
    """Forward-mode through one step: R c_t (= R h_t) from R z_t ``rz : (B, 2H)`` and
    R c_{t-1} ``r_c : (B, H)``."""
    H = r_c.shape[-1]
    f, cand = gates[:, :H], gates[:, H:]
    return ((c_prev * f * (1 - f) - cand * u * (1 - u)) * rz[:, :H] + f * r_c
            + u * (1 - cand * cand) * rz[:, H:])


# ---------------------------------------------------------------------- the model
class JANET:
    """A stacked JANET (see the module docstring). Holds ``spec`` and ``params``; the compute
    methods take ``params`` explicitly and keep per-call state in the returned cache. Its
    recurrent state is one (B, H_l) array per layer."""

    options = (
        Option.custom("hidden", 100, "hidden units per layer, or a list of widths",
                      _check_hidden, _parse_hidden, "list"),
        Option.integer("layers", None, "stacked layers (default: 1, or len(hidden))",
                       minimum=1, allow_none=True),
        Option.choice("init", "orthogonal", "orthogonal: orthogonal recurrent blocks and "
                      "forget_bias; chrono: the JANET paper's b_f ~ log U[1, chrono_T - 1]",
                      JANET_INITS),
        Option.number("forget_bias", 1.0, "initial forget-gate bias (init=orthogonal)"),
        Option.integer("chrono_T", None, "T_max of the chrono init (needed by init=chrono)",
                       minimum=2, allow_none=True),
        Option.number("beta", 1.0, "shift of the input gate: 1 - sigma(s - beta)"),
        Option.flag("bias", True, "biases on the gates and the output"),
    )

    _spec_type = JANETSpec
    _cache_type = JANETCache
    _check_params = LSTM._check_params
    _check_cache = LSTM._check_cache
    _check_states = GRU._check_states
    _project = LSTM._project

    def __init__(self, spec: JANETSpec, params: dict):
        self.spec = spec
        validate.param_arrays("params", params, spec.param_shapes(), finite=True)
        self.params = params

    @classmethod
    def spec_for(cls, n_in, n_out, outputs, *, beta=1.0, **options) -> JANETSpec:
        """The structure the options describe, without drawing weights."""
        spec = LSTM.spec_for.__func__(cls, n_in, n_out, outputs, **options)
        return dataclasses.replace(spec, beta=beta)

    @classmethod
    def build(cls, n_in, n_out, outputs, *, seed=0, dtype=None, hidden=100, layers=None,
              init="orthogonal", forget_bias=1.0, chrono_T=None, beta=1.0,
              bias=True) -> "JANET":
        """A freshly initialised model (what ``make_model("janet", ...)`` builds)."""
        spec = cls.spec_for(n_in, n_out, outputs, hidden=hidden, layers=layers, bias=bias,
                            beta=beta)
        validate.choice("init", init, JANET_INITS)
        if not (isinstance(forget_bias, (int, float)) and math.isfinite(forget_bias)):
            raise ConfigError(f"forget_bias must be a finite number; got {forget_bias!r}")
        if init == "chrono":
            if chrono_T is None:
                raise ConfigError("init 'chrono' needs chrono_T, the longest dependency T_max "
                                  "to expect (e.g. the task's T); or use init 'orthogonal'")
            if not bias:
                raise ConfigError("init 'chrono' sets the forget-gate bias: it needs bias = "
                                  "true")
            validate.positive_int("chrono_T", chrono_T, minimum=2)
        seed = validate.positive_int("seed", seed, minimum=0)
        dtype = backend.resolve_dtype(dtype)
        rng = backend.host_rng(seed)
        np = backend.numpy
        host, fan_in = {}, n_in
        for i, H in enumerate(spec.hidden, start=1):
            host[f"layer{i}.W_in"] = np.concatenate(
                [inits.glorot_uniform(rng, H, fan_in) for _ in range(GATES)])
            host[f"layer{i}.W_rec"] = np.concatenate(
                [inits.orthogonal(rng, H) for _ in range(GATES)])
            if bias:
                b = np.zeros(GATES * H)
                if init == "chrono":
                    b[:H] = np.log(rng.uniform(1.0, chrono_T - 1.0, size=H))
                else:
                    b[:H] = forget_bias
                host[f"layer{i}.b"] = b
            fan_in = H
        host["out.W"] = inits.glorot_uniform(rng, n_out, fan_in)
        if bias:
            host["out.b"] = np.zeros(n_out)
        return cls(spec, {k: backend.to_device(host[k], dtype=dtype)
                          for k in spec.param_shapes()})

    def __repr__(self):
        s = self.spec
        return (f"JANET(n_in={s.n_in}, hidden={list(s.hidden)}, n_out={s.n_out}, "
                f"beta={s.beta}, bias={s.bias}, outputs={s.outputs!r})")

    # ------------------------------------------------------------------ forward
    def forward(self, params: dict, x, state=None):
        """Run the network over a sequence.

        Parameters
        ----------
        params : dict
            The keys, in order, and shapes of ``spec.param_shapes()``, one float dtype.
        x : (T, B, n_in)
            Finite, of the parameters' dtype.
        state : list of (B, H_l), optional
            Initial hidden (= cell) state per layer, zeros if omitted.

        Returns
        -------
        y : (T, B, n_out) for outputs "every"/"masked", (B, n_out) for "last"
        cache : JANETCache
        """
        xp = backend.get_xp()
        s = self.spec
        dtype = self._check_params(params)
        validate.float_array("x", x, shape=(None, None, s.n_in), dtype=dtype)
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ConfigError(f"x must have T >= 1 steps and B >= 1 sequences; got shape "
                              f"{tuple(x.shape)}")
        T, B, _ = x.shape
        if state is not None:
            self._check_states("state", state, B, dtype)
        below, hs, gs, us = x, [], [], []
        for i, H in enumerate(s.hidden, start=1):
            h = xp.empty((T + 1, B, H), dtype=dtype)
            h[0] = 0 if state is None else state[i - 1]
            # gates[t] first holds the input projection; each step adds the recurrent term
            # and activates it in place
            gates = xp.empty((T, B, GATES * H), dtype=dtype)
            u = xp.empty((T, B, H), dtype=dtype)
            self._project(params, i, below, gates)
            w_rec_t = params[f"layer{i}.W_rec"].T
            for t in range(T):
                z = gates[t]
                z += h[t] @ w_rec_t
                janet_step(z, h[t], u[t], h[t + 1], s.beta)
            hs.append(h), gs.append(gates), us.append(u)
            below = h[1:]
        return readout(self.spec, params, hs[-1], T, B), JANETCache(x=x, h=hs, gates=gs, u=us)

    # ------------------------------------------------------------------ backward
    def backward(self, params: dict, dy, cache: JANETCache, d_final_state=None,
                 d_hidden=None):
        """Backpropagation through time.

        Parameters
        ----------
        dy : like the forward's y
            dLoss/dy.
        cache : JANETCache
            From :meth:`forward`.
        d_final_state : list of (B, H_l), optional
            dLoss/d(final state) per layer, for losses that continue past this chunk.
        d_hidden : list of (T, B, H_l), optional
            Extra dLoss/dh_t for t = 1..T per layer (structural damping).

        Returns
        -------
        grads : dict with the keys of ``params``
        d_state : list of (B, H_l)
            dLoss/d(initial state) per layer.
        """
        return self._backward(params, dy, cache, d_final_state, d_hidden)

    def hidden_gradients(self, params: dict, dy, cache: JANETCache) -> list:
        """dLoss/dh_t for t = 1..T per layer, (T, B, H_l) each: the total gradient reaching
        each hidden state through the readout, the layer above and all later steps."""
        record = []
        self._backward(params, dy, cache, record=record)
        return record

    def _backward(self, params, dy, cache, d_final_state=None, d_hidden=None, record=None):
        """:meth:`backward`; with ``record`` (a list) it also puts dLoss/dh_t of every layer,
        (T, B, H_l) arrays in layer order, into ``record``."""
        xp = backend.get_xp()
        s = self.spec
        dtype = self._check_params(params)
        T, B = self._check_cache(cache, dtype)
        x = cache.x
        expected = (B, s.n_out) if s.outputs == "last" else (T, B, s.n_out)
        validate.float_array("dy", dy, shape=expected, finite=False)
        if d_final_state is not None:
            self._check_states("d_final_state", d_final_state, B)
        check_d_hidden(s, d_hidden, T, B)
        grads, d_from_above, d_last = readout_backward(s, params, dy, cache.h[-1], T, B)
        d_state = [None] * s.layers
        recorded = [None] * s.layers
        for i in range(s.layers, 0, -1):
            H = s.hidden[i - 1]
            h, gates, u = cache.h[i - 1], cache.gates[i - 1], cache.u[i - 1]
            below = x if i == 1 else cache.h[i - 2][1:]
            w_rec = params[f"layer{i}.W_rec"]
            dh = xp.zeros((B, H), dtype=dtype)
            if d_final_state is not None:
                dh += d_final_state[i - 1]
            if d_last is not None:
                dh += d_last
            if d_hidden is not None:
                extra = d_hidden[i - 1]
                d_from_above = extra if d_from_above is None else d_from_above + extra
            rec = None if record is None else xp.empty((T, B, H), dtype=dtype)
            dz = xp.empty((T, B, GATES * H), dtype=dtype)
            for t in range(T - 1, -1, -1):
                if d_from_above is not None:
                    dh += d_from_above[t]
                if rec is not None:
                    rec[t] = dh
                janet_step_backward(dh, gates[t], u[t], h[t], dz[t])
                dh += dz[t] @ w_rec
            d_state[i - 1] = dh
            recorded[i - 1] = rec
            dz2 = dz.reshape(T * B, GATES * H)
            fan_in = below.shape[2]
            grads[f"layer{i}.W_rec"] = dz2.T @ h[:-1].reshape(T * B, H)
            grads[f"layer{i}.W_in"] = dz2.T @ below.reshape(T * B, fan_in)
            if s.bias:
                grads[f"layer{i}.b"] = dz2.sum(axis=0)
            if i > 1:
                d_from_above = (dz2 @ params[f"layer{i}.W_in"]).reshape(T, B, fan_in)
            d_last = None
        if record is not None:
            record[:] = recorded
        return {k: grads[k] for k in params}, d_state

    # ------------------------------------------------------------------ R-op
    def rop(self, params: dict, v: dict, cache: JANETCache):
        """Forward-mode J v along ``v`` (keys of ``params``), the initial state constant.

        Returns
        -------
        r_y : like y
        r_h : list of (T + 1, B, H_l)
            R h_t per layer (``r_h[l][0]`` is zero).
        """
        xp = backend.get_xp()
        s = self.spec
        dtype = self._check_params(params, v)
        T, B = self._check_cache(cache, dtype)
        x = cache.x
        r_below, r_hs = None, []
        for i, H in enumerate(s.hidden, start=1):
            h, gates, u = cache.h[i - 1], cache.gates[i - 1], cache.u[i - 1]
            below = x if i == 1 else cache.h[i - 2][1:]
            fan_in = below.shape[2]
            r_pre = below.reshape(T * B, fan_in) @ v[f"layer{i}.W_in"].T
            r_pre += h[:-1].reshape(T * B, H) @ v[f"layer{i}.W_rec"].T
            if r_below is not None:
                r_pre += r_below.reshape(T * B, fan_in) @ params[f"layer{i}.W_in"].T
            r_pre = r_pre.reshape(T, B, GATES * H)
            if s.bias:
                r_pre += v[f"layer{i}.b"]
            w_rec_t = params[f"layer{i}.W_rec"].T
            r_h = xp.zeros((T + 1, B, H), dtype=dtype)
            for t in range(T):
                rz = r_pre[t] + r_h[t] @ w_rec_t
                r_h[t + 1] = janet_step_rop(rz, r_h[t], gates[t], u[t], h[t])
            r_hs.append(r_h)
            r_below = r_h[1:]
        top, r_top = cache.h[-1], r_hs[-1]
        r_y = readout_rop(s, params, v, top, r_top, T, B)
        return r_y, r_hs

    # ------------------------------------------------------------------ structural damping
    structural_form = "hidden"  # Hessian-free's default form for this model

    def structural_damping(self, r_hidden, cache: JANETCache, form: str = "hidden"):
        """The ``d_hidden`` of structural damping of strength 1 with the penalty
        1/2 sum_t ||R h_t||^2 on the hidden states (``form="hidden"``): dLoss/dh_t gains R h_t.

        Parameters
        ----------
        r_hidden : list of (T + 1, B, H_l)
            From :meth:`rop`.
        cache : JANETCache
            The forward's cache at the same parameters (unused: the penalty is on R h alone).

        Returns
        -------
        list of (T, B, H_l)
        """
        if form == "matching":
            raise ConfigError("structural_form 'matching' (Martens & Sutskever 2011's matching "
                              "loss of one hidden nonlinearity) is not defined for gated cells "
                              "such as the JANET; use structural_form 'hidden'")
        validate.choice("form", form, ("hidden",))
        return [r_h[1:].copy() for r_h in r_hidden]
