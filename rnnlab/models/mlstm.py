"""Stacked multiplicative LSTM (mLSTM) with hand-written forward, BPTT and R-op.

Shapes: T steps, B batch, n_in inputs, H_l hidden units and n_l intermediate units in layer l
(l = 1..d), n_out outputs. Arrays are time-major: ``x : (T, B, n_in)``.

The mLSTM (Krause 2015, arXiv:1510.04953, cited by ``hf-vs-sgd-efficiency-mlstm.md`` as "a
combination of mRNNs and LSTM") is an LSTM whose recurrent term W_rec h_{t-1} is replaced by the
multiplicative RNN's input-dependent transition W_hh(x_t) = W_hm diag(W_mi x_t) W_mh
(Sutskever, Martens & Hinton 2011; ``hf-vs-sgd-efficiency-mlstm.md`` Eq. 3), computed through
the intermediate state m_t::

    h_t^0 = x_t,   (h_0^l, c_0^l) = state^l (zeros unless given)
    m_t = (W_mx^l h_t^{l-1}) * (W_mh^l h_{t-1}^l)                 (n_l,)    intermediate state
    z_t = W_x^l h_t^{l-1} + W_m^l m_t + b^l                        (4 H_l,)  gate-major: i f g o
    y_t = W_out h_t^d + b_out

followed by one of two cell forms (option ``form``):

``"chainer"`` (the default)
    The LSTM step of :mod:`rnnlab.models.lstm` on z_t, bias on all four blocks::

        i, f, o = sigma(z[i]), sigma(z[f]), sigma(z[o]),   g = tanh(z[g])
        c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)

``"matlab"``
    A linear cell input u_t = z[g] (the mLSTM's h-hat, no bias on it), biases only on the gates,
    and a bias b_h inside the output nonlinearity; b_h is stored in the g block of ``b^l``, so
    both forms have the same parameters::

        i, f, o = sigma(z[i]), sigma(z[f]), sigma(z[o]),   u = z[g] = W_x[g] h^{l-1} + W_m[g] m
        c_t = f * c_{t-1} + i * u,   h_t = tanh(o * c_t + b_h)

with sigma(z) = 0.5 tanh(z / 2) + 0.5. Paper symbols: W_mi = W_mx, W_hm = W_m (here one matrix
stacking the four blocks), W_hx = W_x.

Which form, and where the sources differ
-----------------------------------------
``hf-vs-sgd-efficiency-mlstm.md`` (Krause, Lu, Murray & Renals, "On the efficiency of recurrent
neural network optimization algorithms") gives only the mRNN factorisation (Eq. 3) and says the
mLSTM combines it with the LSTM; it states no mLSTM equations and does not say which cell form
its runs used. The authors' code (``benkrause/mLSTM``) has two:

* ``chainer/mLSTMWN.py`` (README: "the most successful mLSTM configuration we have found to
  date", 1.24 bits/char on Hutter Prize): ``lstm_in = W_hx x + b + W_hm ((W_mx x) * (W_mh h))``
  fed to ``chainer.functions.lstm``, i.e. standard LSTM nonlinearities, forget bias 1; its
  matrices are weight-normalised (not done here), and its first step has no multiplicative term
  (the same as h_0 = 0 here). Chainer's LSTM interleaves the gates per unit; rnnlab stores them
  gate-major (a permutation of rows, the same model).
* ``matlab/mLSTMhutter.m`` (README: "the training configuration for initial experiments run on
  Hutter Prize", so the closest to the paper's 2015-16 runs): ``ForwardPass`` leaves the
  h-hat block linear and unbiased, adds biases and sigmoids to the three gates, and computes
  ``outs = tanh(state .* read + b_hid)``; one layer, forget bias 3, Gaussian initial weights
  (std 0.1 input-side, 0.02 recurrent), stored initial states.

The default is ``"chainer"``: it is the authors' later and best configuration, it is exactly the
LSTM step on a different z_t (so mLSTM and LSTM runs compare the recurrent transition and nothing
else), and it is what ``optimizers.md`` Section 6.2 chose. ``form="matlab"`` is there to replicate
the Matlab runs; reproducing those exactly also needs ``forget_bias=3``. The initialisation below
is rnnlab's (as the LSTM's), not either code's.

Weights are stored (out, in), gate-major and contiguous: ``W_x^l : (4 H_l, H_{l-1})`` and
``W_mx^l : (n_l, H_{l-1})`` (the input-side projections of all T steps are one GEMM each),
``W_mh^l : (n_l, H_l)``, ``W_m^l : (4 H_l, n_l)``, ``b^l : (4 H_l,)``; each step is a
(B, H) @ (H, n) and a (B, n) @ (n, 4H) GEMM. The state of a layer is the pair ``(h, c)``, each
(B, H_l), as for the LSTM.

Initialisation (host-side, seeded, float64, then cast and moved): input-side matrices (W_x per
gate block, W_mx) Glorot-uniform; W_mh and each gate block of W_m Haar-orthogonal where square
(n_l = H_l, Saxe et al. 2014), else Glorot-uniform; output Glorot-uniform; biases 0 except the
forget-gate bias ``forget_bias`` (default 1, the Chainer code's).

BPTT: gradient reaches h_{t-1} only through m_t (there is no direct recurrent matrix):
dLoss/dm_t = W_m^T dz_t, dLoss/d(W_mh h_{t-1}) = dm_t * (W_mx x_t), dLoss/d(W_mx x_t) =
dm_t * (W_mh h_{t-1}). R-op (forward-mode J v, initial state held constant):
R m_t = R(W_mx x_t) * (W_mh h_{t-1}) + (W_mx x_t) * (V_mh h_{t-1} + W_mh R h_{t-1}), then the
cell's every nonlinearity linearised; ``r_hidden`` is R h per layer, (T + 1, B, H_l), so
structural damping takes the ``"hidden"`` form (a penalty 1/2 sum_t ||R h_t||^2 on h only;
``optimizers.md`` 4.2: where to damp a gated cell is not specified by the sources, rnnlab damps
h). Martens & Sutskever's ``"matching"`` form is defined for a single hidden nonlinearity and is
refused.
"""
from __future__ import annotations

import dataclasses
import math
import numbers

from .. import backend, validate
from ..errors import ConfigError
from ..options import Option
from . import init as inits
from .base import StackedSpec, check_d_hidden, readout, readout_backward, readout_rop
from .elman import _check_hidden, _parse_hidden
from .lstm import LSTM, LSTMCache, _sigmoid_, lstm_step, lstm_step_backward, lstm_step_rop

GATES = 4  # i, f, g, o
FORMS = ("chainer", "matlab")


def _check_intermediate(name, value):
    """``intermediate``: None (n_l = H_l), one width for every layer, or one per layer."""
    return None if value is None else _check_hidden(name, value)


@dataclasses.dataclass(frozen=True)
class MLSTMSpec(StackedSpec):
    """The structure of a stacked mLSTM, readable without running it.

    Attributes
    ----------
    n_in : int
    hidden : tuple of int
        Widths H_1..H_d.
    n_out : int
    bias : bool
        Whether the gates (and, in the matlab form, the output tanh) and the output layer have
        biases.
    outputs : {"every", "last", "masked"}
    intermediate : tuple of int
        Widths n_1..n_d of the intermediate states m_t (given as None: n_l = H_l; or one int for
        every layer).
    form : {"chainer", "matlab"}
        The cell form (module docstring).
    """

    n_in: int
    hidden: tuple
    n_out: int
    bias: bool = True
    outputs: str = "last"
    intermediate: tuple = None
    form: str = "chainer"

    kind = "mlstm"
    gates = GATES
    # (T, B) arrays per hidden unit for n_l = H_l, chainer form. Forward: h, c, 4 gates (the
    # input projection is written straight into the gate buffer), tanh c, and m with its two
    # factors W_mx x and W_mh h (3). BPTT adds 4 dz, dLoss/d(W_mh h), dLoss/d(W_mx x) and the
    # gradient handed to the layer below. Instances rescale the m-sized part to their widths.
    train_arrays_per_unit = 17
    eval_arrays_per_unit = 10

    def __post_init__(self):
        self._check_stack()
        validate.choice("form", self.form, FORMS)
        n_m = self.intermediate
        if n_m is None:
            widths = self.hidden
        elif isinstance(n_m, numbers.Integral) and not isinstance(n_m, bool):
            widths = (n_m,) * self.layers
        else:
            widths = tuple(n_m)
            if len(widths) != self.layers:
                raise ConfigError(f"intermediate must be one width or one per layer "
                                  f"({self.layers}); got {list(widths)}")
        widths = tuple(validate.positive_int("intermediate", w) for w in widths)
        object.__setattr__(self, "intermediate", widths)
        # the arrays of width H (h, c, 4 gates, tanh c unless matlab) and of width n (m, its
        # factors, and in BPTT their 2 gradients); the other 5 of training are 4 dz + d below
        ratio = sum(widths) / sum(self.hidden)
        own = 7 - (self.form == "matlab")
        object.__setattr__(self, "train_arrays_per_unit", math.ceil(own + 5 + 5 * ratio))
        object.__setattr__(self, "eval_arrays_per_unit", math.ceil(own + 3 * ratio))

    def param_shapes(self) -> dict:
        """Parameter names and shapes, in the model's fixed order."""
        shapes, fan_in = {}, self.n_in
        for i, (H, n) in enumerate(zip(self.hidden, self.intermediate), start=1):
            shapes[f"layer{i}.W_x"] = (GATES * H, fan_in)
            shapes[f"layer{i}.W_mx"] = (n, fan_in)
            shapes[f"layer{i}.W_mh"] = (n, H)
            shapes[f"layer{i}.W_m"] = (GATES * H, n)
            if self.bias:
                shapes[f"layer{i}.b"] = (GATES * H,)
            fan_in = H
        shapes["out.W"] = (self.n_out, fan_in)
        if self.bias:
            shapes["out.b"] = (self.n_out,)
        return shapes

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"hidden": list(self.hidden),
                                           "intermediate": list(self.intermediate)}


@dataclasses.dataclass(frozen=True)
class MLSTMCache:
    """What the forward pass keeps for BPTT and the R-op.

    Attributes
    ----------
    x : (T, B, n_in)
    h, c : list of d arrays (T + 1, B, H_l)
        Hidden outputs and cell states per layer; index 0 is the initial state.
    gates : list of d arrays (T, B, 4 H_l)
        ``[i, f, g, o]`` of steps 1..T, activated (in the matlab form the g block is the linear
        cell input u_t).
    tanh_c : list of d arrays (T, B, H_l), or of None in the matlab form
        tanh(c_t) of steps 1..T (the matlab form's derivatives come from h_t itself).
    mx, mh, m : list of d arrays (T, B, n_l)
        W_mx h_t^{l-1}, W_mh h_{t-1}^l and their product m_t.
    """

    x: object
    h: list
    c: list
    gates: list
    tanh_c: list
    mx: list
    mh: list
    m: list

    final_state = LSTMCache.final_state  # [(h_T, c_T)] per layer, the next chunk's state


# ---------------------------------------------------------------------- matlab-form steps
# (the chainer form is lstm_step / lstm_step_backward / lstm_step_rop of rnnlab.models.lstm)
def mlstm_matlab_step(z, c_prev, b_h, gates, c_next, h_next):
    """One step of the matlab form from ``z : (B, 4H)`` (gate biases included, none on the g
    block) and ``b_h : (H,)`` or None: writes the activated gates ``[i, f, u, o]`` (u = z[g],
    linear) into ``gates : (B, 4H)``, and c_t, h_t = tanh(o c_t + b_h) into ``c_next``,
    ``h_next : (B, H)``. ``z`` may be ``gates`` itself."""
    xp = backend.get_xp()
    H = c_prev.shape[-1]
    gates[...] = z
    _sigmoid_(gates[:, :2 * H])
    _sigmoid_(gates[:, 3 * H:])
    i, f, u, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    xp.multiply(f, c_prev, out=c_next)
    c_next += i * u
    xp.multiply(o, c_next, out=h_next)
    if b_h is not None:
        h_next += b_h
    xp.tanh(h_next, out=h_next)


def mlstm_matlab_step_backward(dh, dc, gates, c_prev, c, h, dz):
    """BPTT through one matlab-form step: from dLoss/dh_t ``dh`` and dLoss/dc_t ``dc`` (both
    (B, H); ``dc`` is updated in place to dLoss/dc_{t-1}), write dLoss/dz_t into
    ``dz : (B, 4H)``; returns dLoss/da_t (B, H) for a_t = o c_t + b_h, whose sum over the batch
    is b_h's gradient. ``c``, ``h`` are c_t, h_t."""
    H = dh.shape[-1]
    i, f, u, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    da = dh * (1 - h * h)
    dc += da * o
    dz[:, :H] = dc * u * i * (1 - i)
    dz[:, H:2 * H] = dc * c_prev * f * (1 - f)
    dz[:, 2 * H:3 * H] = dc * i
    dz[:, 3 * H:] = da * c * o * (1 - o)
    dc *= f
    return da


def mlstm_matlab_step_rop(rz, r_c, r_bh, gates, c_prev, c, h):
    """Forward-mode through one matlab-form step: from R z_t ``rz : (B, 4H)`` (without the g
    block's bias direction), R c_{t-1} ``r_c`` and R b_h ``r_bh`` ((H,) or None) return
    (R h_t, R c_t)."""
    H = r_c.shape[-1]
    i, f, u, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    r_i = rz[:, :H] * i * (1 - i)
    r_f = rz[:, H:2 * H] * f * (1 - f)
    r_o = rz[:, 3 * H:] * o * (1 - o)
    r_c_next = r_f * c_prev + f * r_c + r_i * u + i * rz[:, 2 * H:3 * H]
    r_a = r_o * c + o * r_c_next
    if r_bh is not None:
        r_a += r_bh
    return (1 - h * h) * r_a, r_c_next


def _square_or_glorot(rng, fan_out, fan_in):
    """A Haar-orthogonal block where it is square, else Glorot-uniform."""
    if fan_out == fan_in:
        return inits.orthogonal(rng, fan_in)
    return inits.glorot_uniform(rng, fan_out, fan_in)


# ---------------------------------------------------------------------- the model
class MLSTM:
    """A stacked mLSTM (see the module docstring). Holds ``spec`` and ``params``; the compute
    methods take ``params`` explicitly and keep per-call state in the returned cache."""

    options = (
        Option.custom("hidden", 100, "hidden units per layer, or a list of widths",
                      _check_hidden, _parse_hidden, "list"),
        Option.integer("layers", None, "stacked layers (default: 1, or len(hidden))",
                       minimum=1, allow_none=True),
        Option.custom("intermediate", None, "intermediate units n_m per layer, or a list of "
                      "widths (default: hidden)", _check_intermediate, _parse_hidden, "list"),
        Option.choice("form", "chainer", "chainer: LSTM nonlinearities (the authors' Chainer "
                      "code); matlab: linear cell input, h = tanh(o c + b_h) (their Matlab "
                      "code)", FORMS),
        Option.number("forget_bias", 1.0, "initial forget-gate bias"),
        Option.flag("bias", True, "biases on the gates and the output"),
    )
    structural_form = "hidden"  # Hessian-free's default structural-damping form for this model

    _spec_type = MLSTMSpec
    _cache_type = MLSTMCache
    # the LSTM's checks of params/v, of a cache (x, h) and of (h, c) pair lists fit as they are
    _check_params = LSTM._check_params
    _check_cache = LSTM._check_cache
    _check_pairs = LSTM._check_pairs
    structural_damping = LSTM.structural_damping

    def __init__(self, spec: MLSTMSpec, params: dict):
        self.spec = spec
        validate.param_arrays("params", params, spec.param_shapes(), finite=True)
        self.params = params

    @classmethod
    def spec_for(cls, n_in, n_out, outputs, *, hidden=100, layers=None, intermediate=None,
                 form="chainer", bias=True, **_weights) -> MLSTMSpec:
        """The structure the options describe, without drawing weights."""
        widths = LSTM.spec_for(n_in, n_out, outputs, hidden=hidden, layers=layers,
                               bias=bias).hidden
        return cls._spec_type(n_in, widths, n_out, bias, outputs, intermediate, form)

    @classmethod
    def build(cls, n_in, n_out, outputs, *, seed=0, dtype=None, hidden=100, layers=None,
              intermediate=None, form="chainer", forget_bias=1.0, bias=True) -> "MLSTM":
        """A freshly initialised model (what ``make_model("mlstm", ...)`` builds)."""
        spec = cls.spec_for(n_in, n_out, outputs, hidden=hidden, layers=layers,
                            intermediate=intermediate, form=form, bias=bias)
        if not (isinstance(forget_bias, numbers.Real) and not isinstance(forget_bias, bool)
                and math.isfinite(forget_bias)):
            raise ConfigError(f"forget_bias must be a finite number; got {forget_bias!r}")
        seed = validate.positive_int("seed", seed, minimum=0)
        dtype = backend.resolve_dtype(dtype)
        rng = backend.host_rng(seed)
        np = backend.numpy
        host, fan_in = {}, n_in
        for i, (H, n) in enumerate(zip(spec.hidden, spec.intermediate), start=1):
            host[f"layer{i}.W_x"] = np.concatenate(
                [inits.glorot_uniform(rng, H, fan_in) for _ in range(GATES)])
            host[f"layer{i}.W_mx"] = inits.glorot_uniform(rng, n, fan_in)
            host[f"layer{i}.W_mh"] = _square_or_glorot(rng, n, H)
            host[f"layer{i}.W_m"] = np.concatenate(
                [_square_or_glorot(rng, H, n) for _ in range(GATES)])
            if bias:
                b = np.zeros(GATES * H)
                b[H:2 * H] = forget_bias
                host[f"layer{i}.b"] = b
            fan_in = H
        host["out.W"] = inits.glorot_uniform(rng, n_out, fan_in)
        if bias:
            host["out.b"] = np.zeros(n_out)
        return cls(spec, {k: backend.to_device(host[k], dtype=dtype)
                          for k in spec.param_shapes()})

    def __repr__(self):
        s = self.spec
        return (f"MLSTM(n_in={s.n_in}, hidden={list(s.hidden)}, "
                f"intermediate={list(s.intermediate)}, n_out={s.n_out}, form={s.form!r}, "
                f"bias={s.bias}, outputs={s.outputs!r})")

    # ------------------------------------------------------------------ helpers
    def _gate_bias(self, out, b):
        """out += b over the blocks that carry a bias before the nonlinearity: all four in the
        chainer form, the gates i, f, o in the matlab form (its g block of b is b_h)."""
        if self.spec.form == "chainer":
            out += b
            return
        H = b.shape[0] // GATES
        out[..., :2 * H] += b[:2 * H]
        out[..., 3 * H:] += b[3 * H:]

    def _project(self, params, i, below, gates, mx):
        """gates = below @ W_x^T (+ bias) and mx = below @ W_mx^T, one GEMM each over all T
        steps; ``below : (T, B, fan_in)``, ``gates : (T, B, 4H)``, ``mx : (T, B, n)``."""
        xp = backend.get_xp()
        T, B, fan_in = below.shape
        flat = below.reshape(T * B, fan_in)
        xp.matmul(flat, params[f"layer{i}.W_x"].T, out=gates.reshape(T * B, -1))
        xp.matmul(flat, params[f"layer{i}.W_mx"].T, out=mx.reshape(T * B, -1))
        if self.spec.bias:
            self._gate_bias(gates, params[f"layer{i}.b"])

    def _b_h(self, params, i, H):
        """The matlab form's output bias b_h (the g block of b), or None."""
        if self.spec.form == "matlab" and self.spec.bias:
            return params[f"layer{i}.b"][2 * H:3 * H]
        return None

    # ------------------------------------------------------------------ forward
    def forward(self, params: dict, x, state=None):
        """Run the network over ``x : (T, B, n_in)``; ``state`` is a list of ``(h, c)`` pairs,
        each (B, H_l) (zeros if omitted). Returns ``y`` ((T, B, n_out), or (B, n_out) for
        outputs "last") and an :class:`MLSTMCache`."""
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
        matlab = s.form == "matlab"
        below = x
        hs, cs, gs, tcs, mxs, mhs, ms = [], [], [], [], [], [], []
        for i, (H, n) in enumerate(zip(s.hidden, s.intermediate), start=1):
            h = xp.empty((T + 1, B, H), dtype=dtype)
            c = xp.empty((T + 1, B, H), dtype=dtype)
            h[0], c[0] = (0, 0) if state is None else state[i - 1]
            gates = xp.empty((T, B, GATES * H), dtype=dtype)
            mx = xp.empty((T, B, n), dtype=dtype)
            mh = xp.empty((T, B, n), dtype=dtype)
            m = xp.empty((T, B, n), dtype=dtype)
            tanh_c = None if matlab else xp.empty((T, B, H), dtype=dtype)
            # the pre-activations go into the gate buffer, which the step activates in place
            self._project(params, i, below, gates, mx)
            w_mh_t, w_m_t = params[f"layer{i}.W_mh"].T, params[f"layer{i}.W_m"].T
            b_h = self._b_h(params, i, H)
            for t in range(T):
                xp.matmul(h[t], w_mh_t, out=mh[t])
                xp.multiply(mx[t], mh[t], out=m[t])
                z = gates[t]
                z += m[t] @ w_m_t
                if matlab:
                    mlstm_matlab_step(z, c[t], b_h, gates[t], c[t + 1], h[t + 1])
                else:
                    lstm_step(z, c[t], gates[t], c[t + 1], tanh_c[t], h[t + 1])
            hs.append(h), cs.append(c), gs.append(gates), tcs.append(tanh_c)
            mxs.append(mx), mhs.append(mh), ms.append(m)
            below = h[1:]
        top = hs[-1]
        y = readout(s, params, top, T, B)
        return y, MLSTMCache(x=x, h=hs, c=cs, gates=gs, tanh_c=tcs, mx=mxs, mh=mhs, m=ms)

    # ------------------------------------------------------------------ backward
    def backward(self, params: dict, dy, cache: MLSTMCache, d_final_state=None, d_hidden=None):
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
        return self._backward(params, dy, cache, d_final_state, d_hidden)

    def hidden_gradients(self, params: dict, dy, cache: MLSTMCache) -> list:
        """dLoss/dh_t for t = 1..T per layer, list of (T, B, H_l): the total gradient reaching
        each hidden output (through the readout, the layer above and all later steps) for
        ``dy`` = dLoss/dy, as BPTT computes it."""
        record = []
        self._backward(params, dy, cache, record=record)
        return record

    def _backward(self, params, dy, cache, d_final_state=None, d_hidden=None, record=None):
        """BPTT; with ``record`` a list, it is filled with dLoss/dh_t per layer."""
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
        matlab = s.form == "matlab"
        grads, d_from_above, d_last = readout_backward(s, params, dy, cache.h[-1], T, B)
        d_state = [None] * s.layers
        if record is not None:
            record[:] = [None] * s.layers
        for i in range(s.layers, 0, -1):
            H, n = s.hidden[i - 1], s.intermediate[i - 1]
            h, c, gates = cache.h[i - 1], cache.c[i - 1], cache.gates[i - 1]
            tanh_c, mx, mh = cache.tanh_c[i - 1], cache.mx[i - 1], cache.mh[i - 1]
            below = x if i == 1 else cache.h[i - 2][1:]
            w_m, w_mh = params[f"layer{i}.W_m"], params[f"layer{i}.W_mh"]
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
            d_mh = xp.empty((T, B, n), dtype=dtype)  # dLoss/d(W_mh h_{t-1})
            d_mx = xp.empty((T, B, n), dtype=dtype)  # dLoss/d(W_mx h_t^{l-1})
            d_bh = xp.zeros(H, dtype=dtype) if matlab and s.bias else None
            seen = None if record is None else xp.empty((T, B, H), dtype=dtype)
            for t in range(T - 1, -1, -1):
                if d_from_above is not None:
                    dh += d_from_above[t]
                if seen is not None:
                    seen[t] = dh
                if matlab:
                    da = mlstm_matlab_step_backward(dh, dc, gates[t], c[t], c[t + 1], h[t + 1],
                                                    dz[t])
                    if d_bh is not None:
                        d_bh += da.sum(axis=0)
                else:
                    lstm_step_backward(dh, dc, gates[t], c[t], tanh_c[t], dz[t])
                dm = dz[t] @ w_m
                xp.multiply(dm, mx[t], out=d_mh[t])
                xp.multiply(dm, mh[t], out=d_mx[t])
                dh = d_mh[t] @ w_mh
            d_state[i - 1] = (dh, dc)
            if record is not None:
                record[i - 1] = seen
            fan_in = below.shape[2]
            dz2 = dz.reshape(T * B, GATES * H)
            d_mx2 = d_mx.reshape(T * B, n)
            below2 = below.reshape(T * B, fan_in)
            grads[f"layer{i}.W_x"] = dz2.T @ below2
            grads[f"layer{i}.W_mx"] = d_mx2.T @ below2
            grads[f"layer{i}.W_mh"] = d_mh.reshape(T * B, n).T @ h[:-1].reshape(T * B, H)
            grads[f"layer{i}.W_m"] = dz2.T @ cache.m[i - 1].reshape(T * B, n)
            if s.bias:
                db = dz2.sum(axis=0)
                if d_bh is not None:  # the g block of dz is dLoss/du, and u has no bias
                    db[2 * H:3 * H] = d_bh
                grads[f"layer{i}.b"] = db
            if i > 1:
                d_from_above = (dz2 @ params[f"layer{i}.W_x"]
                                + d_mx2 @ params[f"layer{i}.W_mx"]).reshape(T, B, fan_in)
            d_last = None
        return {k: grads[k] for k in params}, d_state

    # ------------------------------------------------------------------ R-op
    def rop(self, params: dict, v: dict, cache: MLSTMCache):
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
        matlab = s.form == "matlab"
        r_below, r_hs = None, []
        for i, (H, n) in enumerate(zip(s.hidden, s.intermediate), start=1):
            h, c, gates = cache.h[i - 1], cache.c[i - 1], cache.gates[i - 1]
            tanh_c, mx, mh = cache.tanh_c[i - 1], cache.mx[i - 1], cache.mh[i - 1]
            below = x if i == 1 else cache.h[i - 2][1:]
            fan_in = below.shape[2]
            w_x, w_mx = params[f"layer{i}.W_x"], params[f"layer{i}.W_mx"]
            w_mh, w_m = params[f"layer{i}.W_mh"], params[f"layer{i}.W_m"]
            below2 = below.reshape(T * B, fan_in)
            # every term that does not involve this layer's own R h_{t-1}, for all steps at once
            r_mx = below2 @ v[f"layer{i}.W_mx"].T
            r_pre = below2 @ v[f"layer{i}.W_x"].T
            if r_below is not None:
                r_below2 = r_below.reshape(T * B, fan_in)
                r_mx += r_below2 @ w_mx.T
                r_pre += r_below2 @ w_x.T
            mx2 = mx.reshape(T * B, n)
            r_m = r_mx * mh.reshape(T * B, n)
            r_m += mx2 * (h[:-1].reshape(T * B, H) @ v[f"layer{i}.W_mh"].T)
            r_pre += r_m @ w_m.T
            r_pre += cache.m[i - 1].reshape(T * B, n) @ v[f"layer{i}.W_m"].T
            r_pre = r_pre.reshape(T, B, GATES * H)
            r_bh = None
            if s.bias:
                self._gate_bias(r_pre, v[f"layer{i}.b"])
                if matlab:
                    r_bh = v[f"layer{i}.b"][2 * H:3 * H]
            w_mh_t, w_m_t = w_mh.T, w_m.T
            r_h = xp.zeros((T + 1, B, H), dtype=dtype)
            r_c = xp.zeros((B, H), dtype=dtype)
            for t in range(T):
                rz = r_pre[t] + (mx[t] * (r_h[t] @ w_mh_t)) @ w_m_t
                if matlab:
                    r_h[t + 1], r_c = mlstm_matlab_step_rop(rz, r_c, r_bh, gates[t], c[t],
                                                            c[t + 1], h[t + 1])
                else:
                    r_h[t + 1], r_c = lstm_step_rop(rz, r_c, gates[t], c[t], tanh_c[t])
            r_hs.append(r_h)
            r_below = r_h[1:]
        top, r_top = cache.h[-1], r_hs[-1]
        r_y = readout_rop(s, params, v, top, r_top, T, B)
        return r_y, r_hs
