"""Stacked LSTM with hand-written forward, backpropagation through time, and R-op.

Shapes: T steps, B batch, n_in inputs, H_l hidden units in layer l (l = 1..d), n_out outputs.
Arrays are time-major: ``x : (T, B, n_in)``.

Forward (the standard LSTM with forget gate: Hochreiter & Schmidhuber 1997, forget gate of Gers,
Schmidhuber & Cummins 2000, no peepholes; the form of Graves 2013 "Generating sequences with
recurrent neural networks" eqs. 7-11 without peepholes, and of ``torch.nn.LSTM``)::

    h_t^0 = x_t,   (h_0^l, c_0^l) = state^l (zeros unless given)
    z_t   = W_in^l h_t^{l-1} + W_rec^l h_{t-1}^l + b^l             (4 H_l,) gate-major: i f g o
    i_t   = sigma(z_t[i]),  f_t = sigma(z_t[f]),  g_t = tanh(z_t[g]),  o_t = sigma(z_t[o])
    c_t   = f_t * c_{t-1} + i_t * g_t
    h_t   = o_t * tanh(c_t)
    y_t   = W_out h_t^d + b_out

with sigma(z) = 0.5 tanh(z / 2) + 0.5. Weights are stored (out, in), gate-major and contiguous:
``W_in^l : (4 H_l, H_{l-1})``, ``W_rec^l : (4 H_l, H_l)``, ``b^l : (4 H_l,)``, rows
``[0, H)`` the input gate i, ``[H, 2H)`` the forget gate f, ``[2H, 3H)`` the cell input g,
``[3H, 4H)`` the output gate o (PyTorch's order), so the input projection of all T steps is one
GEMM and each step one (B, H) @ (H, 4H) GEMM.

The recurrent state of a layer is the pair ``(h, c)``, each (B, H_l).

Initialisation (host-side, seeded, float64, then cast and moved): input matrices Glorot-uniform
per gate block (fan_in H_{l-1}, fan_out H_l), recurrent matrices one Haar-orthogonal (H, H) block
per gate (Saxe et al. 2014), output Glorot-uniform, biases 0 except

* ``init="orthogonal"``: the forget-gate bias is ``forget_bias`` (default 1; Gers et al. 2000,
  Jozefowicz, Zaremba & Sutskever 2015 "An empirical exploration of recurrent network
  architectures");
* ``init="chrono"`` (Tallec & Ollivier 2018, "Can recurrent neural networks warp time?",
  Section 5): ``b_f ~ log(U[1, chrono_T - 1])`` per unit and ``b_i = -b_f``, other biases 0
  (``forget_bias`` is not used).

R-op (forward-mode J v, the initial state held constant): every gate nonlinearity linearised,
``R h_t = R o_t * tanh(c_t) + o_t * (1 - tanh(c_t)^2) * R c_t``; ``r_hidden`` is R h per layer,
(T + 1, B, H_l) like the Elman model's, so structural damping's ``"hidden"`` form (a penalty
1/2 sum_t ||R h_t||^2 on the hidden outputs, rnnlab's default for gated cells) applies. The
``"matching"`` form of Martens & Sutskever 2011 is defined for a single hidden nonlinearity and is
refused.
"""
from __future__ import annotations

import dataclasses
import math

from .. import backend, validate
from ..errors import ConfigError
from ..options import Option
from . import init as inits
from .base import StackedSpec, check_d_hidden, readout_backward
from .elman import _check_hidden, _parse_hidden

GATES = 4  # i, f, g, o
LSTM_INITS = ("orthogonal", "chrono")


def _sigmoid_(a):
    """sigma(a) = 0.5 tanh(a / 2) + 0.5, in place (branch-free)."""
    xp = backend.get_xp()
    xp.multiply(a, 0.5, out=a)
    xp.tanh(a, out=a)
    xp.multiply(a, 0.5, out=a)
    xp.add(a, 0.5, out=a)
    return a


@dataclasses.dataclass(frozen=True)
class LSTMSpec(StackedSpec):
    """The structure of a stacked LSTM, readable without running it.

    Attributes
    ----------
    n_in : int
    hidden : tuple of int
        Widths H_1..H_d.
    n_out : int
    bias : bool
        Whether the gates and the output have biases.
    outputs : {"every", "last", "masked"}
    """

    n_in: int
    hidden: tuple
    n_out: int
    bias: bool = True
    outputs: str = "last"

    kind = "lstm"
    gates = GATES  # gate blocks per layer (class attributes, not fields)

    def __post_init__(self):
        self._check_stack()

    def param_shapes(self) -> dict:
        """Parameter names and shapes, in the model's fixed order."""
        shapes, fan_in = {}, self.n_in
        for i, width in enumerate(self.hidden, start=1):
            shapes[f"layer{i}.W_in"] = (self.gates * width, fan_in)
            shapes[f"layer{i}.W_rec"] = (self.gates * width, width)
            if self.bias:
                shapes[f"layer{i}.b"] = (self.gates * width,)
            fan_in = width
        shapes["out.W"] = (self.n_out, fan_in)
        if self.bias:
            shapes["out.b"] = (self.n_out,)
        return shapes

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"hidden": list(self.hidden)}


@dataclasses.dataclass(frozen=True)
class LSTMCache:
    """What the forward pass keeps for BPTT and the R-op.

    Attributes
    ----------
    x : (T, B, n_in)
    h : list of d arrays (T + 1, B, H_l)
        Hidden outputs per layer; ``h[l][0]`` is the initial state.
    c : list of d arrays (T + 1, B, H_l)
        Cell states per layer; ``c[l][0]`` is the initial cell state.
    gates : list of d arrays (T, B, 4 H_l)
        The activated gates ``[i, f, g, o]`` of steps 1..T.
    tanh_c : list of d arrays (T, B, H_l)
        tanh(c_t) of steps 1..T.
    """

    x: object
    h: list
    c: list
    gates: list
    tanh_c: list

    @property
    def final_state(self) -> list:
        """``[(h_T, c_T)]`` per layer, each (B, H_l): the next chunk's ``state``."""
        return [(h[-1].copy(), c[-1].copy()) for h, c in zip(self.h, self.c)]


# ---------------------------------------------------------------------- step functions
def lstm_step(z, c_prev, gates, c_next, tanh_c, h_next):
    """One LSTM step from the full pre-activation ``z : (B, 4H)`` (input and recurrent terms and
    bias summed), writing the activated gates into ``gates : (B, 4H)`` and c_t, tanh(c_t), h_t
    into ``c_next``, ``tanh_c``, ``h_next : (B, H)``."""
    xp = backend.get_xp()
    H = c_prev.shape[-1]
    gates[...] = z
    _sigmoid_(gates[:, :2 * H])
    xp.tanh(gates[:, 2 * H:3 * H], out=gates[:, 2 * H:3 * H])
    _sigmoid_(gates[:, 3 * H:])
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    xp.multiply(f, c_prev, out=c_next)
    c_next += i * g
    xp.tanh(c_next, out=tanh_c)
    xp.multiply(o, tanh_c, out=h_next)


def lstm_step_backward(dh, dc, gates, c_prev, tanh_c, dz):
    """BPTT through one step: from dLoss/dh_t ``dh`` and dLoss/dc_t ``dc`` (both (B, H), the
    latter updated in place to dLoss/dc_{t-1}), write dLoss/dz_t into ``dz : (B, 4H)``."""
    H = dh.shape[-1]
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    dc += dh * o * (1 - tanh_c * tanh_c)
    dz[:, :H] = dc * g * i * (1 - i)
    dz[:, H:2 * H] = dc * c_prev * f * (1 - f)
    dz[:, 2 * H:3 * H] = dc * i * (1 - g * g)
    dz[:, 3 * H:] = dh * tanh_c * o * (1 - o)
    dc *= f


def lstm_step_rop(rz, r_c, gates, c_prev, tanh_c):
    """Forward-mode through one step: from R z_t ``rz : (B, 4H)`` and R c_{t-1} ``r_c`` return
    (R h_t, R c_t)."""
    H = r_c.shape[-1]
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    r_i = rz[:, :H] * i * (1 - i)
    r_f = rz[:, H:2 * H] * f * (1 - f)
    r_g = rz[:, 2 * H:3 * H] * (1 - g * g)
    r_o = rz[:, 3 * H:] * o * (1 - o)
    r_c_next = r_f * c_prev + f * r_c + r_i * g + i * r_g
    r_h_next = r_o * tanh_c + o * (1 - tanh_c * tanh_c) * r_c_next
    return r_h_next, r_c_next


# ---------------------------------------------------------------------- the model
class LSTM:
    """A stacked LSTM (see the module docstring). Holds ``spec`` and ``params``; the compute
    methods take ``params`` explicitly and keep per-call state in the returned cache."""

    options = (
        Option.custom("hidden", 100, "hidden units per layer, or a list of widths",
                      _check_hidden, _parse_hidden, "list"),
        Option.integer("layers", None, "stacked layers (default: 1, or len(hidden))",
                       minimum=1, allow_none=True),
        Option.choice("init", "orthogonal", "orthogonal: orthogonal recurrent blocks and "
                      "forget_bias; chrono: Tallec & Ollivier 2018 gate biases", LSTM_INITS),
        Option.number("forget_bias", 1.0, "initial forget-gate bias (init=orthogonal)"),
        Option.integer("chrono_T", None, "T_max of the chrono init (needed by init=chrono)",
                       minimum=2, allow_none=True),
        Option.flag("bias", True, "biases on the gates and the output"),
    )

    def __init__(self, spec: LSTMSpec, params: dict):
        self.spec = spec
        validate.param_arrays("params", params, spec.param_shapes(), finite=True)
        self.params = params

    _spec_type = LSTMSpec
    _cache_type = LSTMCache

    @classmethod
    def spec_for(cls, n_in, n_out, outputs, *, hidden=100, layers=None, bias=True,
                 **_weights) -> LSTMSpec:
        """The structure the options describe, without drawing weights."""
        if isinstance(hidden, int):
            widths = (hidden,) * (layers or 1)
        else:
            widths = tuple(hidden)
            if layers is not None and layers != len(widths):
                raise ConfigError(f"layers ({layers}) must equal the number of widths in hidden "
                                  f"{list(widths)}, or be left out")
        return cls._spec_type(n_in, widths, n_out, bias, outputs)

    @classmethod
    def build(cls, n_in, n_out, outputs, *, seed=0, dtype=None, hidden=100, layers=None,
              init="orthogonal", forget_bias=1.0, chrono_T=None, bias=True) -> "LSTM":
        """A freshly initialised model (what ``make_model("lstm", ...)`` builds)."""
        spec = cls.spec_for(n_in, n_out, outputs, hidden=hidden, layers=layers, bias=bias)
        validate.choice("init", init, LSTM_INITS)
        if not (isinstance(forget_bias, (int, float)) and math.isfinite(forget_bias)):
            raise ConfigError(f"forget_bias must be a finite number; got {forget_bias!r}")
        if init == "chrono":
            if chrono_T is None:
                raise ConfigError("init 'chrono' needs chrono_T, the longest dependency T_max "
                                  "to expect (e.g. the task's T)")
            if not bias:
                raise ConfigError("init 'chrono' sets the gate biases: it needs bias = true")
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
                    b_f = np.log(rng.uniform(1.0, chrono_T - 1.0, size=H))
                    b[H:2 * H] = b_f
                    b[:H] = -b_f
                else:
                    b[H:2 * H] = forget_bias
                host[f"layer{i}.b"] = b
            fan_in = H
        host["out.W"] = inits.glorot_uniform(rng, n_out, fan_in)
        if bias:
            host["out.b"] = np.zeros(n_out)
        params = {k: backend.to_device(host[k], dtype=dtype) for k in spec.param_shapes()}
        return cls(spec, params)

    def __repr__(self):
        s = self.spec
        return (f"LSTM(n_in={s.n_in}, hidden={list(s.hidden)}, n_out={s.n_out}, bias={s.bias}, "
                f"outputs={s.outputs!r})")

    # ------------------------------------------------------------------ checks
    def _check_params(self, params, v=None):
        shapes = self.spec.param_shapes()
        dtype = validate.param_arrays("params", params, shapes)
        if v is not None:
            validate.param_arrays("v", v, shapes, dtype=dtype)
        return dtype

    def _check_cache(self, cache, dtype):
        if not isinstance(cache, self._cache_type):
            raise ConfigError(f"cache must be the {self._cache_type.__name__} that forward() "
                              f"returned; "
                              f"got {type(cache).__name__}")
        x = cache.x
        T, B = x.shape[0], x.shape[1]
        want = [(T + 1, B, w) for w in self.spec.hidden]
        got = [tuple(h.shape) for h in cache.h]
        if x.dtype != dtype or got != want:
            raise ConfigError(f"cache does not come from this model's forward() at {dtype} "
                              f"parameters: hidden states {got} of {x.dtype}, expected {want} "
                              f"of {dtype}")
        return T, B

    def _check_pairs(self, name, pairs, B, dtype=None):
        s = self.spec
        if len(pairs) != s.layers:
            raise ConfigError(f"{name} must hold one (h, c) pair per layer ({s.layers}); "
                              f"got {len(pairs)}")
        for i, (pair, width) in enumerate(zip(pairs, s.hidden)):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ConfigError(f"{name}[{i}] must be a pair (h, c) of (B, {width}) arrays; "
                                  f"got {type(pair).__name__}")
            for part, a in zip("hc", pair):
                validate.float_array(f"{name}[{i}].{part}", a, shape=(B, width), dtype=dtype,
                                     finite=dtype is not None)

    def _project(self, params, i, below, out):
        """out = below @ W_in^T + b, all T steps in one GEMM; ``out : (T, B, 4H)``."""
        T, B, fan_in = below.shape
        flat = out.reshape(T * B, -1)
        backend.get_xp().matmul(below.reshape(T * B, fan_in), params[f"layer{i}.W_in"].T,
                                out=flat)
        if self.spec.bias:
            out += params[f"layer{i}.b"]

    # ------------------------------------------------------------------ forward
    def forward(self, params: dict, x, state=None):
        """Run the network over ``x : (T, B, n_in)``; ``state`` is a list of ``(h, c)`` pairs,
        each (B, H_l) (zeros if omitted). Returns ``y`` ((T, B, n_out), or (B, n_out) for
        outputs "last") and an :class:`LSTMCache`."""
        xp = backend.get_xp()
        s = self.spec
        dtype = self._check_params(params)
        validate.float_array("x", x, shape=(None, None, s.n_in), dtype=dtype)
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ConfigError(f"x must have T >= 1 steps and B >= 1 sequences; got shape "
                              f"{tuple(x.shape)}")
        T, B, _ = x.shape
        if state is not None:
            self._check_pairs("state", state, B, dtype)
        below = x
        hs, cs, gs, tcs = [], [], [], []
        for i, H in enumerate(s.hidden, start=1):
            h = xp.empty((T + 1, B, H), dtype=dtype)
            c = xp.empty((T + 1, B, H), dtype=dtype)
            h[0], c[0] = (0, 0) if state is None else state[i - 1]
            gates = xp.empty((T, B, GATES * H), dtype=dtype)
            tanh_c = xp.empty((T, B, H), dtype=dtype)
            pre = xp.empty((T, B, GATES * H), dtype=dtype)
            self._project(params, i, below, pre)
            w_rec_t = params[f"layer{i}.W_rec"].T
            for t in range(T):
                z = pre[t]
                z += h[t] @ w_rec_t
                lstm_step(z, c[t], gates[t], c[t + 1], tanh_c[t], h[t + 1])
            hs.append(h), cs.append(c), gs.append(gates), tcs.append(tanh_c)
            below = h[1:]
        top = hs[-1]
        if s.outputs == "last":
            y = top[T] @ params["out.W"].T
        else:
            y = (top[1:].reshape(T * B, -1) @ params["out.W"].T).reshape(T, B, s.n_out)
        if s.bias:
            y += params["out.b"]
        return y, LSTMCache(x=x, h=hs, c=cs, gates=gs, tanh_c=tcs)

    # ------------------------------------------------------------------ backward
    def backward(self, params: dict, dy, cache: LSTMCache, d_final_state=None, d_hidden=None):
        """BPTT.

        Parameters
        ----------
        dy : like the forward's y
        d_final_state : list of (dh_T, dc_T) pairs, each (B, H_l), optional
        d_hidden : list of (T, B, H_l), optional
            Extra dLoss/dh_t for t = 1..T per layer (structural damping).

        Returns
        -------
        grads : dict with the keys of ``params``
        d_state : list of (dh_0, dc_0) pairs, each (B, H_l)
        """
        xp = backend.get_xp()
        s = self.spec
        dtype = self._check_params(params)
        T, B = self._check_cache(cache, dtype)
        x = cache.x
        expected = (B, s.n_out) if s.outputs == "last" else (T, B, s.n_out)
        validate.float_array("dy", dy, shape=expected, finite=False)
        if d_final_state is not None:
            self._check_pairs("d_final_state", d_final_state, B)
        check_d_hidden(s, d_hidden, T, B)
        grads, d_from_above, d_last = readout_backward(s, params, dy, cache.h[-1], T, B)
        d_state = [None] * s.layers
        for i in range(s.layers, 0, -1):
            H = s.hidden[i - 1]
            h, c = cache.h[i - 1], cache.c[i - 1]
            gates, tanh_c = cache.gates[i - 1], cache.tanh_c[i - 1]
            below = x if i == 1 else cache.h[i - 2][1:]
            w_rec = params[f"layer{i}.W_rec"]
            dh = xp.zeros((B, H), dtype=dtype)
            dc = xp.zeros((B, H), dtype=dtype)
            if d_final_state is not None:
                dh += d_final_state[i - 1][0]
                dc += d_final_state[i - 1][1]
            if d_last is not None:
                dh += d_last
            if d_hidden is not None:
                extra = d_hidden[i - 1]
                d_from_above = extra if d_from_above is None else d_from_above + extra
            dz = xp.empty((T, B, GATES * H), dtype=dtype)
            for t in range(T - 1, -1, -1):
                if d_from_above is not None:
                    dh += d_from_above[t]
                lstm_step_backward(dh, dc, gates[t], c[t], tanh_c[t], dz[t])
                dh = dz[t] @ w_rec
            d_state[i - 1] = (dh, dc)
            dz2 = dz.reshape(T * B, GATES * H)
            fan_in = below.shape[2]
            grads[f"layer{i}.W_rec"] = dz2.T @ h[:-1].reshape(T * B, H)
            grads[f"layer{i}.W_in"] = dz2.T @ below.reshape(T * B, fan_in)
            if s.bias:
                grads[f"layer{i}.b"] = dz2.sum(axis=0)
            if i > 1:
                d_from_above = (dz2 @ params[f"layer{i}.W_in"]).reshape(T, B, fan_in)
            d_last = None
        return {k: grads[k] for k in params}, d_state

    # ------------------------------------------------------------------ R-op
    def rop(self, params: dict, v: dict, cache: LSTMCache):
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
            h, c = cache.h[i - 1], cache.c[i - 1]
            gates, tanh_c = cache.gates[i - 1], cache.tanh_c[i - 1]
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
            r_c = xp.zeros((B, H), dtype=dtype)
            for t in range(T):
                rz = r_pre[t] + r_h[t] @ w_rec_t
                r_h[t + 1], r_c = lstm_step_rop(rz, r_c, gates[t], c[t], tanh_c[t])
            r_hs.append(r_h)
            r_below = r_h[1:]
        top, r_top = cache.h[-1], r_hs[-1]
        if s.outputs == "last":
            r_y = top[T] @ v["out.W"].T + r_top[T] @ params["out.W"].T
        else:
            r_y = ((top[1:].reshape(T * B, -1) @ v["out.W"].T
                    + r_top[1:].reshape(T * B, -1) @ params["out.W"].T).reshape(T, B, s.n_out))
        if s.bias:
            r_y += v["out.b"]
        return r_y, r_hs

    # ------------------------------------------------------------------ structural damping
    def structural_damping(self, r_hidden, cache: LSTMCache, form: str = "hidden"):
        """The ``d_hidden`` of structural damping of strength 1 with the penalty
        1/2 sum_t ||R h_t||^2 on the hidden outputs (``form="hidden"``): dLoss/dh_t gains R h_t.

        Parameters
        ----------
        r_hidden : list of (T + 1, B, H_l)
            From :meth:`rop`.

        Returns
        -------
        list of (T, B, H_l)
        """
        if form == "matching":
            raise ConfigError("structural_form 'matching' (Martens & Sutskever 2011's matching "
                              "loss of one hidden nonlinearity) is not defined for gated cells "
                              "such as the LSTM; use structural_form 'hidden'")
        validate.choice("form", form, ("hidden",))
        return [r_h[1:].copy() for r_h in r_hidden]
