"""Stacked Elman RNN with hand-written forward, backpropagation through time, and R-op.

Shapes: T steps, B batch, n_in inputs, H_i hidden units in layer i (i = 1..d), n_out outputs.
Arrays are time-major: ``x : (T, B, n_in)``.

Forward (``path-sgd-relu-rnn.md`` Table 1, with the optional bias node of its footnote 2)::

    h_t^0 = x_t,   h_0^i = state^i (zeros unless given)
    h_t^i = act(W_in^i h_t^{i-1} + W_rec^i h_{t-1}^i + b^i)        i = 1..d, t = 1..T
    y_t   = W_out h_t^d + b_out

Weights are stored (out, in): ``W_in^i : (H_i, H_{i-1})``, ``W_rec^i : (H_i, H_i)``,
``W_out : (n_out, H_d)``; ``W[j, k]`` is the edge from unit k to unit j.

``outputs`` says which steps emit ``y``: ``"every"`` (y : (T, B, n_out)), ``"last"``
(y : (B, n_out), only y_T), or ``"masked"`` (y at every step, scored where a (T, B) mask is 1;
the mask belongs to the loss, the model computes all steps).

Performance: the input projections of all steps are one GEMM; the loop does one GEMM and two
in-place elementwise calls per step (forward) and one GEMM and one or two elementwise calls per
step (backward); weight gradients are one GEMM each over all T*B rows. The per-step GEMM runs
states-first, (B, H) @ (H, H), or weights-first, (H, H) @ (H, B), whichever the BLAS does faster
for the shape (:func:`_weights_first`). Timings against PyTorch: ``benchmarks/README.md``.

Layer normalisation (option ``layer_norm``, default off; Ba, Kiros & Hinton 2016, "Layer
normalization", Section 3.1 for RNNs; the RNN-orth and RNN-id baselines of ``nru.md`` use it)::

    a_t^i = W_in^i h_t^{i-1} + W_rec^i h_{t-1}^i                       (no b^i)
    n_t^i = (a_t^i - mean(a_t^i)) / sqrt(var(a_t^i) + eps)             over the H_i units
    h_t^i = act(g^i * n_t^i + beta^i)

with the biased variance (divided by H_i) and eps = :data:`LN_EPS` = 1e-5 inside the square
root (``torch.nn.LayerNorm``'s; Ba et al. write none, implementations add one so a constant
pre-activation does not divide by zero). Every layer is normalised. Each layer has a gain
``layer{i}.g`` (init 1) and, with ``bias``, a shift ``layer{i}.beta`` (init 0); the bias b^i is
dropped, since the mean subtraction cancels it exactly (it would have zero gradient for ever),
and beta^i takes its place after the normalisation, as in Ba et al.'s equation. A normalised
layer is not positively homogeneous (its output does not scale with its weights), so path
geometry, Path-SGD, G-SGD and PSGD's stacked Kronecker blocks refuse it; and structural
damping's ``"matching"`` form is refused for it (:meth:`ElmanRNN.structural_damping`). Its
steps are plain loops over the pure functions :func:`layer_norm_step` and its backward and
R-op; the default, un-normalised path does no extra work.
"""
from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping

from .. import backend, validate
from ..errors import ConfigError
from ..options import Option
from . import init as inits
from .base import StackedSpec, check_d_hidden, readout_backward

ACTIVATIONS = ("relu", "tanh", "identity")
LN_EPS = 1e-5  # inside the square root of the layer-norm variance (torch.nn.LayerNorm's)


def _check_hidden(name, value):
    """``hidden``: one width for every layer, or a list of widths, one per layer (NumPy
    integers become Python ints, so configs serialise to JSON)."""
    single = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    widths = [value] if single else value
    if not isinstance(widths, (list, tuple)) or not widths:
        raise ConfigError(f"{name} must be an integer >= 1 or a list of them; got {value!r}")
    widths = [validate.positive_int(name, width) for width in widths]
    return widths[0] if single else widths


def _parse_hidden(text: str):
    parts = [p for p in text.strip().strip("[]").replace(" ", "").split(",") if p]
    try:
        widths = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"expected an integer or a comma-separated list; got {text!r}") from None
    return widths[0] if len(widths) == 1 else widths


def _weights_first(batch: int, width: int) -> bool:
    """Whether the per-step recurrent GEMM runs as (H, H) @ (H, B), weights first, rather than
    (B, H) @ (H, H), states first. Same product, same cost in FLOPs; what differs is how the BLAS
    blocks and threads it. Measured with OpenBLAS 0.3.31 (SkylakeX kernel), 1 and 2 threads:
    weights first is 10-25% faster when H >= 24 B (B = 32 with H = 768 or 1024, B = 16 with
    H = 1024) and 5-60% slower when H <= 16 B (H = 100 with B = 50 or 64; H = 512 with B = 32
    or 128); at H = 8 B (B = 32, H = 256) the two tie.
    """
    return width >= 24 * batch


def _transposed(w, block: int = 64):
    """``w.T`` as a new C-contiguous array, copied ``block`` rows of ``w`` at a time.

    A one-shot transposing copy (``ascontiguousarray(w.T)``) walks one of the two arrays with a
    stride of a whole row, a new memory page per element once rows are 4 KiB long: 7 ms for a
    1024 x 1024 float32 matrix on the benchmark machine, against 0.8 ms in blocks of 64 rows.
    """
    xp = backend.get_xp()
    rows, cols = w.shape
    out = xp.empty((cols, rows), dtype=w.dtype)
    for r in range(0, rows, block):
        out[:, r:r + block] = w[r:r + block].T
    return out


def _check_arrays(arrays):
    """What :meth:`ElmanRNN.from_arrays` is given: a mapping of names to real-valued arrays,
    weight matrices 2-D and biases 1-D (their sizes are checked against each other later)."""
    if not isinstance(arrays, Mapping):
        raise ConfigError(f"arrays must be a dict of parameter names to arrays; "
                          f"got {type(arrays).__name__}")
    for name, a in arrays.items():
        if not isinstance(name, str):
            raise ConfigError(f"arrays must be keyed by parameter names (str); got {name!r}")
        if type(a).__module__.split(".")[0] != "cupy":  # host arrays are copied over
            if not isinstance(a, backend.numpy.ndarray):
                raise ConfigError(f"{name} must be a NumPy or CuPy array; "
                                  f"got {type(a).__name__}")
            validate.plain_array(name, a, backend.numpy)
        if a.dtype.kind not in "fiu":
            raise ConfigError(f"{name} must hold real numbers (a float or integer dtype); "
                              f"got {a.dtype}")
        ndim = 1 if name.endswith(".b") else 2
        if a.ndim != ndim:
            raise ConfigError(f"{name} must be {ndim}-D; got shape {tuple(a.shape)}")


# ---------------------------------------------------------------------- layer-norm steps
def layer_norm_step(a, gain, shift, norm, rstd, z):
    """Normalise one step's pre-activation ``a : (B, H)`` over its H units: write
    n = (a - mean(a)) / sqrt(var(a) + eps) into ``norm : (B, H)`` (which may be ``a`` itself),
    1 / sqrt(var(a) + eps) into ``rstd : (B, 1)`` and ``gain * n + shift`` into ``z : (B, H)``
    (``shift`` None: no shift). Ba, Kiros & Hinton 2016, Section 3.1, with eps."""
    xp = backend.get_xp()
    xp.subtract(a, a.mean(axis=-1, keepdims=True), out=norm)
    xp.sqrt((norm * norm).mean(axis=-1, keepdims=True) + LN_EPS, out=rstd)
    xp.divide(1.0, rstd, out=rstd)
    norm *= rstd
    xp.multiply(norm, gain, out=z)
    if shift is not None:
        z += shift


def _center_project(d, norm, rstd):
    """rstd * (d - mean(d) - norm * mean(d * norm)): the Jacobian of n(a) (symmetric) applied
    to ``d : (B, H)``; with d = dLoss/dn it is dLoss/da, with d = R a it is R n."""
    return rstd * (d - d.mean(axis=-1, keepdims=True)
                   - norm * (d * norm).mean(axis=-1, keepdims=True))


def layer_norm_step_backward(dz, norm, rstd, gain):
    """dLoss/da : (B, H) from dLoss/dz ``dz : (B, H)`` for z = gain * n(a) + shift (the
    gain's and shift's gradients, sums of dz * n and dz over steps and sequences, are the
    caller's)."""
    return _center_project(dz * gain, norm, rstd)


def layer_norm_step_rop(ra, norm, rstd, gain, v_gain, v_shift):
    """R z : (B, H) for z = gain * n(a) + shift from R a ``ra : (B, H)`` and the directions
    ``v_gain``, ``v_shift`` (None: no shift) of the gain and shift."""
    rz = gain * _center_project(ra, norm, rstd) + v_gain * norm
    if v_shift is not None:
        rz += v_shift
    return rz


@dataclasses.dataclass(frozen=True)
class ElmanSpec(StackedSpec):
    """The structure of a stacked Elman RNN, readable without running it.

    Attributes
    ----------
    n_in : int
        Input size.
    hidden : tuple of int
        Widths H_1..H_d of the d hidden layers.
    n_out : int
        Output size.
    activation : {"relu", "tanh", "identity"}
    bias : bool
        Whether hidden layers and the output have biases (the paper's bias node); with
        ``layer_norm`` the hidden layers' shifts beta^i instead of b^i.
    outputs : {"every", "last", "masked"}
        Which steps emit an output.
    layer_norm : bool
        Layer normalisation of every hidden layer's pre-activation (module docstring).
    """

    n_in: int
    hidden: tuple
    n_out: int
    activation: str = "relu"
    bias: bool = True
    outputs: str = "last"
    layer_norm: bool = False

    kind = "elman"  # the registry name (a class attribute, not a field)

    def __post_init__(self):
        self._check_stack()
        validate.choice("activation", self.activation, ACTIVATIONS)
        if not isinstance(self.layer_norm, bool):
            raise ConfigError(f"layer_norm must be True or False; got {self.layer_norm!r}")
        if self.layer_norm and min(self.hidden) < 2:
            # one unit minus its own mean is 0: the layer would output act(beta), a constant
            raise ConfigError(f"layer_norm needs hidden layers of at least 2 units; got hidden "
                              f"{list(self.hidden)}")

    # (T, B) arrays per hidden unit (rnnlab.train.memory): training keeps the states, the
    # pre-activation gradients (first the activation derivative) and the gradient from above,
    # plus the normalised pre-activations n_t with layer_norm; evaluation the states (and n_t)
    @property
    def train_arrays_per_unit(self) -> int:
        return 5 if self.layer_norm else 4

    @property
    def eval_arrays_per_unit(self) -> int:
        return 3 if self.layer_norm else 2

    def param_shapes(self) -> dict:
        """Parameter names and shapes, in the model's fixed order."""
        shapes, fan_in = {}, self.n_in
        for i, width in enumerate(self.hidden, start=1):
            shapes[f"layer{i}.W_in"] = (width, fan_in)
            shapes[f"layer{i}.W_rec"] = (width, width)
            if self.layer_norm:
                shapes[f"layer{i}.g"] = (width,)
                if self.bias:
                    shapes[f"layer{i}.beta"] = (width,)
            elif self.bias:
                shapes[f"layer{i}.b"] = (width,)
            fan_in = width
        shapes["out.W"] = (self.n_out, fan_in)
        if self.bias:
            shapes["out.b"] = (self.n_out,)
        return shapes

    def to_dict(self) -> dict:
        """A JSON-friendly description (checkpoints store it); ``layer_norm`` only when on, so
        an un-normalised spec reads as before the option existed."""
        d = dataclasses.asdict(self) | {"hidden": list(self.hidden)}
        if not self.layer_norm:
            del d["layer_norm"]
        return d


@dataclasses.dataclass(frozen=True)
class ElmanCache:
    """What the forward pass keeps for BPTT and the R-op.

    Attributes
    ----------
    x : (T, B, n_in)
        The input sequence.
    h : list of d arrays (T + 1, B, H_i)
        Hidden states per layer; ``h[i][0]`` is the initial state, ``h[i][t]`` is h_t.
    norm : list of d arrays (T, B, H_i), or None
        With ``layer_norm``: the normalised pre-activations n_1..n_T per layer.
    rstd : list of d arrays (T, B, 1), or None
        With ``layer_norm``: 1 / sqrt(var(a_t) + eps) per layer, step and sequence.
    """

    x: object
    h: list
    norm: list = None
    rstd: list = None

    @property
    def final_state(self) -> list:
        """The last hidden state of every layer, ``[(B, H_1), ..., (B, H_d)]``: pass it as the
        next chunk's ``state`` for truncated BPTT."""
        return [hi[-1].copy() for hi in self.h]


class ElmanRNN:
    """A stacked Elman RNN. Holds its structure (``spec``) and its parameters (``params``).

    The compute methods take ``params`` explicitly, so checkers and optimizers can evaluate the
    model at any parameter point; per-call state lives in the returned cache, never on the model.
    Its recurrent state is one (B, H_i) array per layer.

    Build one with :meth:`create` (random initialisation), :meth:`from_arrays` (given weights),
    or by name: ``make_model("elman", n_in, n_out, outputs, hidden=64, ...)`` with the
    :attr:`options` below.
    """

    options = (
        Option.custom("hidden", 100, "hidden units per layer, or a list of widths",
                      _check_hidden, _parse_hidden, "list"),
        Option.integer("layers", None, "stacked hidden layers (default: 1, or len(hidden))",
                       minimum=1, allow_none=True),
        Option.choice("activation", "relu", "hidden nonlinearity", ACTIVATIONS),
        Option.choice("init", "identity", "recurrent initialisation", inits.INITS),
        Option.number("gain", 1.0, "recurrent gain", minimum=0, inclusive=True),
        Option.number("init_scale", 0.01, "a of U(-a, a) for the identity and uniform inits",
                      minimum=0),
        Option.flag("bias", True, "biases on hidden layers and output (the bias node)"),
        Option.flag("layer_norm", False, "layer normalisation of each hidden layer (Ba et al. "
                    "2016): a gain and shift per layer replace its bias"),
    )

    @classmethod
    def build(cls, n_in: int, n_out: int, outputs: str, *, seed: int = 0, dtype=None,
              **options) -> "ElmanRNN":
        """The model :func:`rnnlab.models.make_model` builds from the options above."""
        spec = cls.spec_for(n_in, n_out, outputs, **options)
        return cls.create(n_in, spec.hidden, n_out, activation=spec.activation, bias=spec.bias,
                          outputs=outputs, init=options.get("init", "identity"),
                          gain=options.get("gain", 1.0), scale=options.get("init_scale", 0.01),
                          seed=seed, dtype=dtype, layer_norm=spec.layer_norm)

    @classmethod
    def spec_for(cls, n_in: int, n_out: int, outputs: str, *, hidden=100, layers=None,
                 activation="relu", bias=True, layer_norm=False, **_weights) -> ElmanSpec:
        """The structure the options describe, without drawing any weight (what the trainer
        reads to estimate a run's memory before allocating it)."""
        if isinstance(hidden, int):
            widths = (hidden,) * (layers or 1)
        else:
            widths = tuple(hidden)
            if layers is not None and layers != len(widths):
                raise ConfigError(f"layers ({layers}) must equal the number of widths in hidden "
                                  f"{list(widths)}, or be left out")
        return ElmanSpec(n_in, widths, n_out, activation, bias, outputs, layer_norm)

    def __init__(self, spec: ElmanSpec, params: dict):
        self.spec = spec
        validate.param_arrays("params", params, spec.param_shapes(), finite=True)
        self.params = params

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, n_in: int, hidden, n_out: int, *, activation: str = "relu",
               bias: bool = True, outputs: str = "last", init: str = "identity",
               gain: float = 1.0, scale: float = 0.01, seed: int = 0, dtype=None,
               layer_norm: bool = False):
        """A model with freshly initialised weights (see :mod:`rnnlab.models.init`).

        Parameters
        ----------
        init : {"identity", "orthogonal", "np-rnn", "uniform", "glorot"}
            Scheme for the recurrent matrices.
        gain : float
            Multiplies every recurrent matrix.
        scale : float
            Half-width a of U(-a, a) for ``init="uniform"``.
        seed : int >= 0
            Seed of the host generator that draws the weights (a NumPy integer is accepted).
        dtype : float32 or float64, default the training dtype.
        layer_norm : bool
            Layer-normalised layers (module docstring): gains start at 1, shifts at 0, and the
            weights are drawn as without it (the same seed gives the same W_in, W_rec, W_out).
        """
        spec = ElmanSpec(n_in, hidden, n_out, activation, bias, outputs, layer_norm)
        seed = validate.positive_int("seed", seed, minimum=0)
        validate.choice("init", init, inits.INITS)
        validate.positive_float("gain", gain, allow_zero=True)
        validate.positive_float("scale", scale)
        dtype = backend.resolve_dtype(dtype)
        rng = backend.host_rng(seed)
        host = {}
        for name, shape in spec.param_shapes().items():
            if name.endswith((".b", ".beta")):
                w = backend.numpy.zeros(shape)
            elif name.endswith(".g"):
                w = backend.numpy.ones(shape)
            elif name.endswith(".W_rec"):
                w = inits.recurrent_matrix(init, rng, shape[0], gain, scale)
            else:
                w = inits.feedforward_matrix(init, rng, shape[0], shape[1], scale)
            host[name] = w
        return cls(spec, {k: backend.to_device(v, dtype=dtype) for k, v in host.items()})

    @classmethod
    def from_arrays(cls, arrays: dict, *, activation: str = "relu", outputs: str = "last",
                    dtype=None):
        """A model whose weights are copies of the given arrays (host or device), widths read
        from shapes.

        ``arrays`` maps the parameter names of :meth:`ElmanSpec.param_shapes` (``"layer1.W_in"``,
        ``"layer1.W_rec"``, optionally ``"layer1.b"``, ..., ``"out.W"``, optionally ``"out.b"``)
        to arrays; biases must be given for all layers or for none. Each array is a NumPy or CuPy
        array (not a masked array or matrix) of real numbers: weight matrices 2-D, biases 1-D.
        """
        _check_arrays(arrays)
        layers = 0
        while f"layer{layers + 1}.W_in" in arrays:
            layers += 1
        if layers == 0 or "out.W" not in arrays:
            raise ConfigError("arrays must hold at least 'layer1.W_in', 'layer1.W_rec' and "
                              f"'out.W'; got {sorted(arrays)}")
        hidden = [arrays[f"layer{i}.W_in"].shape[0] for i in range(1, layers + 1)]
        n_in = arrays["layer1.W_in"].shape[1]
        n_out = arrays["out.W"].shape[0]
        spec = ElmanSpec(n_in, tuple(hidden), n_out, activation, "out.b" in arrays, outputs)
        expected = spec.param_shapes()
        unknown = set(arrays) - set(expected)
        if unknown:
            raise ConfigError(f"unknown parameter names {sorted(unknown)}; "
                              f"expected {list(expected)}")
        missing = [k for k in expected if k not in arrays]
        if missing:
            raise ConfigError(f"missing parameters {missing} (biases go on all layers or none)")
        dtype = backend.resolve_dtype(dtype)
        # copies, so that training the model never changes the caller's arrays
        params = {k: backend.to_device(backend.to_host(arrays[k]), dtype=dtype).copy()
                  for k in expected}
        return cls(spec, params)

    def __repr__(self):
        s = self.spec
        return (f"ElmanRNN(n_in={s.n_in}, hidden={list(s.hidden)}, n_out={s.n_out}, "
                f"activation={s.activation!r}, bias={s.bias}, outputs={s.outputs!r}"
                + (", layer_norm=True)" if s.layer_norm else ")"))

    # ------------------------------------------------------------------ helpers
    def _check_params(self, params, v=None):
        """Check ``params`` (and a direction ``v``) against ``spec.param_shapes()`` (keys in
        order, exact shapes, one float dtype, plain arrays of the active backend); returns the
        dtype. Values need not be finite: training detects divergence from the loss. Runs once
        per public call, a few comparisons per array."""
        shapes = self.spec.param_shapes()
        dtype = validate.param_arrays("params", params, shapes)
        if v is not None:
            validate.param_arrays("v", v, shapes, dtype=dtype)
        return dtype

    def _check_cache(self, cache, dtype):
        """``cache`` must be what :meth:`forward` of this structure returned at this dtype."""
        if not isinstance(cache, ElmanCache):
            raise ConfigError(f"cache must be the ElmanCache that forward() returned; "
                              f"got {type(cache).__name__}")
        s, x, hs = self.spec, cache.x, cache.h
        T, B = x.shape[0], x.shape[1]
        want = [(T + 1, B, width) for width in s.hidden]
        got = [tuple(h.shape) for h in hs]
        if x.dtype != dtype or got != want:
            raise ConfigError(f"cache does not come from this model's forward() at {dtype} "
                              f"parameters: hidden states {got} of {x.dtype}, expected {want} "
                              f"of {dtype}")
        if s.layer_norm and (cache.norm is None or cache.rstd is None):
            raise ConfigError("cache has no normalised pre-activations: it does not come from "
                              "the forward() of this layer_norm = true model")
        return T, B

    def _check_input(self, params, x, state):
        s = self.spec
        dtype = self._check_params(params)
        validate.float_array("x", x, shape=(None, None, s.n_in), dtype=dtype)
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ConfigError(f"x must have T >= 1 steps and B >= 1 sequences; got shape "
                              f"{tuple(x.shape)}")
        if state is not None:
            if len(state) != s.layers:
                raise ConfigError(f"state must hold one array per layer ({s.layers}); "
                                  f"got {len(state)}")
            for i, (st, width) in enumerate(zip(state, s.hidden), start=1):
                validate.float_array(f"state[{i - 1}]", st, shape=(x.shape[1], width),
                                     dtype=dtype)

    def _derivative(self, h):
        """act'(pre-activation) from the outputs ``h`` of the activation (same shape), as a new
        array the caller may overwrite, or None for the identity."""
        xp = backend.get_xp()
        if self.spec.activation == "relu":
            # relu' as a float mask (0 at the kink): h > 0 written straight into a float array,
            # one pass (faster than sign(h) or a bool mask cast afterwards)
            return xp.greater(h, 0, out=xp.empty_like(h))
        if self.spec.activation == "tanh":
            d = xp.multiply(h, h)
            return xp.subtract(1, d, out=d)
        return None

    # ------------------------------------------------------------------ forward
    def forward(self, params: dict, x, state=None):
        """Run the network over a sequence.

        Parameters
        ----------
        params : dict
            Parameters with the keys, in order, and shapes of ``spec.param_shapes()``, all of
            one dtype (float32 or float64), arrays of the active backend.
        x : (T, B, n_in)
            Finite, of the parameters' dtype.
        state : list of (B, H_i), optional
            Initial hidden state per layer (zeros if omitted), e.g. a previous chunk's
            ``cache.final_state`` in truncated BPTT.

        Returns
        -------
        y : (T, B, n_out) for outputs "every"/"masked", (B, n_out) for "last"
        cache : ElmanCache
        """
        xp = backend.get_xp()
        self._check_input(params, x, state)
        s = self.spec
        T, B, _ = x.shape
        below, hs = x, []
        norms, rstds = ([], []) if s.layer_norm else (None, None)
        for i, width in enumerate(s.hidden, start=1):
            h = xp.empty((T + 1, B, width), dtype=x.dtype)
            h[0] = 0 if state is None else state[i - 1]
            if s.layer_norm:
                # norm[t] first holds the input projection W_in h_t^{i-1}
                norm = xp.empty((T, B, width), dtype=x.dtype)
                rstd = xp.empty((T, B, 1), dtype=x.dtype)
                self._input_projection(params, i, below, out=norm)
                self._ln_recur_forward(params, i, h, norm, rstd)
                norms.append(norm), rstds.append(rstd)
            else:
                # h[t + 1] first holds the input projection W_in h_t^{i-1} + b; the loop adds
                # the recurrent term and applies the activation in place.
                self._input_projection(params, i, below, out=h[1:])
                self._recur_forward(h, params[f"layer{i}.W_rec"])
            hs.append(h)
            below = h[1:]
        top = hs[-1]
        if s.outputs == "last":
            y = top[T] @ params["out.W"].T
        else:
            y = (top[1:].reshape(T * B, -1) @ params["out.W"].T).reshape(T, B, s.n_out)
        if s.bias:
            y += params["out.b"]
        return y, ElmanCache(x=x, h=hs, norm=norms, rstd=rstds)

    def _activate_(self, z):
        """act(z) in place."""
        xp = backend.get_xp()
        if self.spec.activation == "relu":
            xp.maximum(z, 0, out=z)
        elif self.spec.activation == "tanh":
            xp.tanh(z, out=z)

    def _ln_recur_forward(self, params, i, h, norm, rstd):
        """The recursion of a layer-normalised layer, for t = 0..T-1: a = norm[t] (the input
        projection) + h[t] @ W_rec^T, normalised in place into norm[t] (and 1/std into
        rstd[t]), h[t + 1] = act(g * norm[t] + beta). A plain per-step loop: normalising needs
        two reductions over the units per step, which the fused in-place loop of
        :meth:`_recur_forward` cannot absorb."""
        w_rec_t = params[f"layer{i}.W_rec"].T
        gain, shift = params[f"layer{i}.g"], params.get(f"layer{i}.beta")
        for t in range(norm.shape[0]):
            a = norm[t]
            a += h[t] @ w_rec_t
            layer_norm_step(a, gain, shift, a, rstd[t], h[t + 1])
            self._activate_(h[t + 1])

    def _recur_forward(self, h, w_rec):
        """h[t + 1] = act(h[t] @ w_rec.T + h[t + 1]) for t = 0..T-1, in place.

        The hot loop: one GEMM into a small reused buffer and two in-place elementwise calls per
        step, on views split off once (indexing ``h[t]`` in the loop costs more than the
        elementwise call on H = 100), with the ufuncs bound to locals and a zero array (not a
        Python scalar, which NumPy converts on every call) for ReLU. The GEMM's operand order
        follows :func:`_weights_first`.
        """
        xp = backend.get_xp()
        matmul, add = xp.matmul, xp.add
        steps = list(h)  # views h[0], ..., h[T]
        batch, width = steps[0].shape
        if _weights_first(batch, width):
            rec_t = xp.empty((width, batch), dtype=h.dtype)
            rec = rec_t.T

            def recurrent(h_prev):  # rec^T = W_rec h_prev^T, (H, H) @ (H, B)
                matmul(w_rec, h_prev.T, out=rec_t)
        else:
            w_rec_t = _transposed(w_rec)
            rec = xp.empty((batch, width), dtype=h.dtype)

            def recurrent(h_prev):  # rec = h_prev W_rec^T, (B, H) @ (H, H)
                matmul(h_prev, w_rec_t, out=rec)

        activation = self.spec.activation
        if activation == "relu":
            maximum, zero = xp.maximum, xp.zeros((), dtype=h.dtype)
            for h_prev, h_next in zip(steps[:-1], steps[1:]):
                recurrent(h_prev)
                add(h_next, rec, out=h_next)
                maximum(h_next, zero, out=h_next)
        elif activation == "tanh":
            tanh = xp.tanh
            for h_prev, h_next in zip(steps[:-1], steps[1:]):
                recurrent(h_prev)
                add(h_next, rec, out=h_next)
                tanh(h_next, out=h_next)
        else:
            for h_prev, h_next in zip(steps[:-1], steps[1:]):
                recurrent(h_prev)
                add(h_next, rec, out=h_next)

    def _input_projection(self, params, i, below, out):
        """out[t] = W_in^i below[t] + b^i for all t: one GEMM over T*B rows.

        With a bias and an input narrower than the layer (but wider than 1), the bias rides in
        the GEMM as a column of ones, [below, 1] @ [W_in^T; b], which saves a pass over the
        (T, B, H_i) output: 1.3-2.5x faster for the adding problem's and the one-hot char-LM's
        inputs (2 threads). A width-1 input uses a broadcast multiply, cheaper than a K=1 GEMM;
        the K=2 GEMM with the bias column measured 3x faster than multiply + bias add for
        sMNIST in isolation, but in the interleaved benchmark a third of its steps then took
        ~50% longer, for a reason not pinned down (the step's first write to 20 MB of fresh
        memory came from two BLAS threads instead of one), so it is not used.
        """
        xp = backend.get_xp()
        w_in = params[f"layer{i}.W_in"]
        T, B, fan_in = below.shape
        rows, width = T * B, out.shape[-1]
        flat_out = out.reshape(rows, width)  # a view: out is contiguous (a slice of h)
        bias = self.spec.bias and not self.spec.layer_norm  # layer_norm: no b (it cancels)
        if bias and 1 < fan_in < width:
            below_1 = xp.empty((rows, fan_in + 1), dtype=below.dtype)
            below_1[:, :fan_in] = below.reshape(rows, fan_in)
            below_1[:, fan_in] = 1
            w_b = xp.empty((fan_in + 1, width), dtype=w_in.dtype)
            w_b[:fan_in] = w_in.T
            w_b[fan_in] = params[f"layer{i}.b"]
            xp.matmul(below_1, w_b, out=flat_out)
            return
        if fan_in == 1:
            xp.multiply(below, w_in[:, 0], out=out)
        else:
            xp.matmul(below.reshape(rows, fan_in), w_in.T, out=flat_out)
        if bias:
            out += params[f"layer{i}.b"]

    # ------------------------------------------------------------------ backward
    def backward(self, params: dict, dy, cache: ElmanCache, d_final_state=None,
                 d_hidden=None):
        """Backpropagation through time.

        Parameters
        ----------
        params : dict
            The parameters the forward pass used (checked as in :meth:`forward`).
        dy : same shape as the forward's y
            dLoss/dy, a floating array of the active backend.
        cache : ElmanCache
            From :meth:`forward`.
        d_final_state : list of (B, H_i), optional
            dLoss/d(final hidden state) per layer, for losses that continue past this chunk.
        d_hidden : list of (T, B, H_i), optional
            An extra dLoss/dh_t per layer and step t = 1..T, added to what arrives from the
            outputs and the layer above (structural damping: :meth:`structural_damping`).

        Returns
        -------
        grads : dict
            dLoss/dparams with the keys of ``params``.
        d_state : list of (B, H_i)
            dLoss/d(initial state) per layer.
        """
        return self._backward(params, dy, cache, d_final_state, d_hidden)

    def hidden_gradients(self, params: dict, dy, cache: ElmanCache) -> list:
        """dLoss/dh_t for t = 1..T per layer, as BPTT computes it: the total gradient reaching
        each hidden state through the readout, the layer above and all later steps.

        Parameters
        ----------
        dy : same shape as the forward's y
            dLoss/dy.
        cache : ElmanCache
            From :meth:`forward`.

        Returns
        -------
        list of d arrays (T, B, H_i)
        """
        record = []
        self._backward(params, dy, cache, record=record)
        return record

    def _backward(self, params, dy, cache, d_final_state=None, d_hidden=None, record=None):
        """:meth:`backward`; with ``record`` (a list) it also puts dLoss/dh_t of every layer,
        (T, B, H_i) arrays in layer order, into ``record``."""
        xp = backend.get_xp()
        s = self.spec
        dtype = self._check_params(params)
        T, B = self._check_cache(cache, dtype)
        x, hs = cache.x, cache.h
        expected = (B, s.n_out) if s.outputs == "last" else (T, B, s.n_out)
        validate.float_array("dy", dy, shape=expected, finite=False)
        if d_final_state is not None:
            if len(d_final_state) != s.layers:
                raise ConfigError(f"d_final_state must hold one array per layer ({s.layers}); "
                                  f"got {len(d_final_state)}")
            for i, (d, width) in enumerate(zip(d_final_state, s.hidden)):
                validate.float_array(f"d_final_state[{i}]", d, shape=(B, width), finite=False)
        check_d_hidden(s, d_hidden, T, B)
        # the gradient arriving at the top layer: at every step, or only at the last one
        grads, d_from_above, d_last = readout_backward(s, params, dy, hs[-1], T, B)

        d_state = [None] * s.layers
        recorded = [None] * s.layers
        for i in range(s.layers, 0, -1):
            h = hs[i - 1]
            width = s.hidden[i - 1]
            below = x if i == 1 else hs[i - 2][1:]
            w_rec = params[f"layer{i}.W_rec"]
            g = xp.zeros((B, width), dtype=x.dtype)
            if d_final_state is not None:
                g += d_final_state[i - 1]
            if d_last is not None:
                g += d_last
            # dLoss/d(pre-activation) per step, (T, B, H_i); it first holds act'(pre-activation)
            # (ReLU, tanh), which the loop multiplies by dLoss/dh_t in place.
            d_pre = self._derivative(h[1:])
            scaled = d_pre is not None
            if not scaled:
                d_pre = xp.empty((T, B, width), dtype=x.dtype)
            if d_hidden is not None:
                extra = d_hidden[i - 1]
                d_from_above = extra if d_from_above is None else d_from_above + extra
            rec = None if record is None else xp.empty((T, B, width), dtype=x.dtype)
            if s.layer_norm:
                # d_pre (act' times dLoss/dh_t, i.e. dLoss/dz_t) gives way to dLoss/da_t
                d_z, d_pre = d_pre, xp.empty((T, B, width), dtype=x.dtype)
                self._ln_recur_backward(params, i, cache, d_z, d_pre, g, d_from_above,
                                        scaled, rec)
                d_z2 = d_z.reshape(T * B, width)
                ones = xp.ones(T * B, dtype=x.dtype)
                grads[f"layer{i}.g"] = ones @ (d_z2 * cache.norm[i - 1].reshape(T * B, width))
                if s.bias:
                    grads[f"layer{i}.beta"] = ones @ d_z2
            else:
                self._recur_backward(d_pre, g, w_rec, d_from_above, scaled, rec)
            recorded[i - 1] = rec
            d_state[i - 1] = g
            d_pre2 = d_pre.reshape(T * B, width)
            fan_in = below.shape[2]
            grads[f"layer{i}.W_rec"] = d_pre2.T @ h[:-1].reshape(T * B, width)
            grads[f"layer{i}.W_in"] = d_pre2.T @ below.reshape(T * B, fan_in)
            if s.bias and not s.layer_norm:
                # a GEMV with ones sums over the T*B rows faster than d_pre2.sum(axis=0)
                grads[f"layer{i}.b"] = xp.ones(T * B, dtype=x.dtype) @ d_pre2
            if i > 1:
                d_from_above = (d_pre2 @ params[f"layer{i}.W_in"]).reshape(T, B, fan_in)
            d_last = None
        if record is not None:
            record[:] = recorded
        return {k: grads[k] for k in params}, d_state

    def _ln_recur_backward(self, params, i, cache, d_z, d_a, g, d_from_above, scaled, rec):
        """BPTT through a layer-normalised layer's recursion, for t = T-1..0::

            g += d_from_above[t]                      (if given)
            d_z[t] = g * d_z[t]   (scaled)  or  g     (d_z first holds act'; identity: not)
            d_a[t] = layer_norm_step_backward(d_z[t], norm[t], rstd[t], gain)
            g = d_a[t] @ w_rec                        (dLoss/dh_{t-1}, left in ``g``)

        ``rec[t]`` (if given) receives g after the first line: dLoss/dh_t.
        """
        xp = backend.get_xp()
        w_rec, gain = params[f"layer{i}.W_rec"], params[f"layer{i}.g"]
        norm, rstd = cache.norm[i - 1], cache.rstd[i - 1]
        for t in range(d_z.shape[0] - 1, -1, -1):
            if d_from_above is not None:
                g += d_from_above[t]
            if rec is not None:
                rec[t] = g
            if scaled:
                d_z[t] *= g
            else:
                d_z[t] = g
            d_a[t] = layer_norm_step_backward(d_z[t], norm[t], rstd[t], gain)
            xp.matmul(d_a[t], w_rec, out=g)

    def _recur_backward(self, d_pre, g, w_rec, d_from_above, scaled, record=None):
        """BPTT through one layer's recursion, in place, for t = T-1..0::

            g += d_from_above[t]                          (if given: a loss at every step)
            d_pre[t] = g * d_pre[t]   (scaled)  or  g     (identity activation)
            g = d_pre[t] @ w_rec                          (dLoss/dh_{t-1}, left in ``g``)

        ``record`` (a (T, B, H) array, optional) receives g of step t before it propagates:
        dLoss/dh_t. It wraps the propagation, so the loops without it do no extra work.

        Two or three calls per step on views split off once, ufuncs bound to locals (see
        :meth:`_recur_forward`); the GEMM's operand order follows :func:`_weights_first`.
        """
        xp = backend.get_xp()
        matmul, multiply, add, copyto = xp.matmul, xp.multiply, xp.add, xp.copyto
        steps = list(d_pre)[::-1]  # views d_pre[T-1], ..., d_pre[0]
        batch, width = g.shape
        if _weights_first(batch, width):
            w_rec_t = _transposed(w_rec)
            g_t = xp.empty((width, batch), dtype=g.dtype)

            def propagate(d):  # g^T = W_rec^T d^T, (H, H) @ (H, B)
                matmul(w_rec_t, d.T, out=g_t)
                # back to a contiguous g: elementwise calls on the transposed view g_t.T are
                # 8-25x slower than this copy and a contiguous call (H = 1024, B = 32)
                copyto(g, g_t.T)
        else:
            def propagate(d):  # (B, H) @ (H, H)
                matmul(d, w_rec, out=g)

        if record is not None:
            inner, slots = propagate, iter(list(record)[::-1])

            def propagate(d):  # g still holds dLoss/dh_t here
                copyto(next(slots), g)
                inner(d)

        if d_from_above is None:
            if scaled:
                for d in steps:
                    multiply(g, d, out=d)
                    propagate(d)
            else:
                for d in steps:
                    copyto(d, g)
                    propagate(d)
        else:
            for d, above in zip(steps, list(d_from_above)[::-1]):
                add(g, above, out=g)
                if scaled:
                    multiply(g, d, out=d)
                else:
                    copyto(d, g)
                propagate(d)

    # ------------------------------------------------------------------ structural damping
    @property
    def structural_form(self) -> str:
        """Hessian-free's default form for this model: MS11's ``"matching"``, or ``"hidden"``
        with ``layer_norm`` (where "matching" is refused)."""
        return "hidden" if self.spec.layer_norm else "matching"

    def structural_damping(self, r_hidden, cache: ElmanCache, form: str = "matching"):
        """The ``d_hidden`` that adds structural damping (Martens & Sutskever 2011) of strength
        1 to a Gauss-Newton product: the Gauss-Newton matrix of a penalty on the change of the
        hidden states, evaluated along the direction whose R-op gave ``r_hidden``.

        ``form="matching"`` (MS11): the penalty is the matching loss of the hidden nonlinearity,
        whose curvature with respect to the pre-activations z_t is diag(act'(z_t)); its product
        enters the pre-activation error as act'(z_t) * R z_t = R h_t, i.e. dLoss/dh_t gains
        R z_t = R h_t / act'(z_t) (0 where act' = 0, where R h_t = 0 too). ``form="hidden"``:
        the penalty 1/2 sum_t ||R h_t||^2 on the hidden states themselves (dLoss/dh_t gains
        R h_t). For ReLU and the identity the two are the same.

        With ``layer_norm`` only ``"hidden"`` is defined. MS11's matching loss sits on the
        pre-activation a_t = W_in h_t^{i-1} + W_rec h_{t-1} + b, linear in the weights, with
        h_t = act(a_t); a normalised layer has h_t = act(g * n_t + beta), not act(a_t). Moving
        the matching loss to the input of act would be a different penalty (its curvature
        passes through the linearised normalisation), one that neither MS11 nor rnnlab's tests
        describe, so it is refused rather than silently renamed "matching".

        Parameters
        ----------
        r_hidden : list of (T + 1, B, H_i)
            From :meth:`rop` (``r_hidden[i][0]``, the initial state's, is zero).
        cache : ElmanCache
            The forward's cache at the same parameters.

        Returns
        -------
        list of (T, B, H_i)
        """
        if form == "matching" and self.spec.layer_norm:
            raise ConfigError("structural_form 'matching' (Martens & Sutskever 2011's matching "
                              "loss on the pre-activation, with h = act(pre-activation)) is not "
                              "defined with layer_norm = true; use structural_form 'hidden'")
        validate.choice("form", form, ("matching", "hidden"))
        xp = backend.get_xp()
        out = []
        for r_h, h in zip(r_hidden, cache.h):
            d = r_h[1:].copy()
            if form == "matching" and self.spec.activation == "tanh":
                deriv = self._derivative(h[1:])
                xp.divide(d, xp.where(deriv > 0, deriv, 1), out=d)
            out.append(d)
        return out

    # ------------------------------------------------------------------ R-op
    def rop(self, params: dict, v: dict, cache: ElmanCache):
        """Forward-mode directional derivative (Pearlmutter's R-op) at ``params`` along ``v``.

        Parameters
        ----------
        v : dict
            A direction with the keys, shapes and dtype of ``params``.
        cache : ElmanCache
            From ``forward(params, x)``; the initial state is treated as a constant.

        Returns
        -------
        r_y : same shape as y
            The derivative of the outputs along ``v``: J v.
        r_h : list of d arrays (T + 1, B, H_i)
            The derivatives of the hidden states (``r_h[i][0]`` is zero): what a Gauss-Newton
            product through time needs.
        """
        xp = backend.get_xp()
        s = self.spec
        dtype = self._check_params(params, v)
        T, B = self._check_cache(cache, dtype)
        x, hs = cache.x, cache.h
        r_below, r_hs = None, []
        for i, width in enumerate(s.hidden, start=1):
            h = hs[i - 1]
            below = x if i == 1 else hs[i - 2][1:]
            deriv = self._derivative(h[1:])
            # R(pre-activation) from the weight directions, for all steps at once ...
            r_pre = (below.reshape(T * B, -1) @ v[f"layer{i}.W_in"].T).reshape(T, B, width)
            r_pre += (h[:-1].reshape(T * B, width) @ v[f"layer{i}.W_rec"].T).reshape(T, B, width)
            if s.bias and not s.layer_norm:
                r_pre += v[f"layer{i}.b"]
            if r_below is not None:
                r_pre += (r_below.reshape(T * B, -1) @ params[f"layer{i}.W_in"].T).reshape(
                    T, B, width)
            # ... then the recurrence through R(h_{t-1}).
            r_h = xp.zeros((T + 1, B, width), dtype=x.dtype)
            w_rec_t = params[f"layer{i}.W_rec"].T
            if s.layer_norm:
                gain, v_gain = params[f"layer{i}.g"], v[f"layer{i}.g"]
                v_shift = v.get(f"layer{i}.beta")
                norm, rstd = cache.norm[i - 1], cache.rstd[i - 1]
                for t in range(T):
                    r = layer_norm_step_rop(r_pre[t] + r_h[t] @ w_rec_t, norm[t], rstd[t],
                                            gain, v_gain, v_shift)
                    r_h[t + 1] = r if deriv is None else r * deriv[t]
            else:
                for t in range(T):
                    r = r_pre[t] + r_h[t] @ w_rec_t
                    r_h[t + 1] = r if deriv is None else r * deriv[t]
            r_hs.append(r_h)
            r_below = r_h[1:]
        top, r_top = hs[-1], r_hs[-1]
        if s.outputs == "last":
            r_y = top[T] @ v["out.W"].T + r_top[T] @ params["out.W"].T
        else:
            r_y = ((top[1:].reshape(T * B, -1) @ v["out.W"].T
                    + r_top[1:].reshape(T * B, -1) @ params["out.W"].T).reshape(T, B, s.n_out))
        if s.bias:
            r_y += v["out.b"]
        return r_y, r_hs
