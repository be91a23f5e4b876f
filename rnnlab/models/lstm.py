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
``[3H, 4H)`` the output gate o (PyTorch's order, so its weights load unchanged).

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

Layout of the computation (what makes it fast in NumPy; ``benchmarks/bench_cells.py`` times it):
the passes run *feature-major*, a step's arrays being (features, B) blocks, so that each gate
block of a step is one contiguous (H, B) array (elementwise calls on the (B, H) column slices of
a (B, 4H) array measured 1.5-3x slower) and each step is one weights-first GEMM each way:

* a layer's per-step GEMM multiplies the stacked weights ``[W_rec | W_in | b] : (4H, K)``,
  K = H + H_{l-1} + 1, by the stacked column ``[h_{t-1}; h_t^{l-1}; 1] : (K, B)``; the layer's
  ``inputs`` hold these columns for all steps, time-minor (K, T + 1, B), filled once with the
  layer's input and ones and by the loop with h. So the input projection and the bias need no
  pass of their own, and the three weight gradients are GEMMs over the columns of chunks of
  steps (:class:`ChunkedProducts`);
* the gate rows run in the order o, i, f, g (:data:`ORDER`) and each step's block of ``gates``
  has a fifth row block, tanh(c_t): the three sigmoid gates are one block, their rows of the
  forward's stacked weights are halved (exact) so that one tanh over four blocks gives tanh(z_g)
  and tanh(z / 2), and the backward gets 1 - g^2 and 1 - tanh(c_t)^2 in one call and pairs
  (i, g), (o, tanh c_t) with strided views: 8 elementwise calls per step forward, 11 backward;
* a forward's whole cache is one allocation (:func:`carve`) and the backward keeps dLoss/dz
  for a chunk of steps only, which spares the page faults that glibc's allocator otherwise
  costs every training step at some shapes.

The cache's ``h`` and ``c`` are (T + 1, B, H_l) views of these arrays (not contiguous); what the
protocol promises about them (shapes, values, ``final_state``) holds. The batch-major step
functions ``lstm_step``, ``lstm_step_backward`` and ``lstm_step_rop`` (one (B, 4H) step in
PyTorch's gate order) are the reference form of the cell, kept for the cells built on it
(:mod:`rnnlab.models.mlstm`); ``tests/test_lstm.py`` checks the feature-major steps against
them.
"""
from __future__ import annotations

import dataclasses
import math

from .. import backend, validate
from ..errors import ConfigError
from ..options import Option
from . import init as inits
from .base import StackedSpec, check_d_hidden
from .elman import _check_hidden, _parse_hidden, _transposed

GATES = 4  # i, f, g, o
LSTM_INITS = ("orthogonal", "chrono")
#: The order of the parameter gate blocks (i f g o = 0 1 2 3) in the feature-major passes:
#: o, i, f, g. The sigmoid gates are rows [0, 3H), the gates that multiply dLoss/dc_t in the
#: backward rows [H, 4H), and g sits next to the tanh(c_t) block that follows the gates.
ORDER = (3, 0, 1, 2)


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
    # (T, B) arrays per hidden unit (rnnlab.train.memory), counted from the code: the forward
    # keeps h (in the stacked inputs; their input rows are counted with n_in), c, 4 gates and
    # tanh(c); training adds the gradient arriving from the layer above in a stack (or
    # structural damping's d_hidden), and dLoss/dz for a chunk of steps only
    # (ChunkedProducts: 2 x 1 MiB, not per unit)
    train_arrays_per_unit = 8
    eval_arrays_per_unit = 7

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
    inputs : list of d arrays (K_l, T + 1, B), K_l = H_l + H_{l-1} (+ 1 with biases)
        The per-step GEMM operands ``[h_t; h_{t+1}^{l-1}; 1]``, time-minor: ``inputs[l][:H, t]``
        is h_t (t = 0..T), the next rows the layer's input at step t + 1 (t < T), then ones.
    h : list of d arrays (T + 1, B, H_l)
        Hidden outputs per layer, views of ``inputs``; ``h[l][0]`` is the initial state.
    c : list of d arrays (T + 1, B, H_l)
        Cell states per layer (views of feature-major (T + 1, H_l, B) arrays); ``c[l][0]`` is
        the initial cell state.
    gates : list of d arrays (T, 5 H_l, B)
        Per step t = 1..T, feature-major: the activated gates in the order ``[o, i, f, g]``
        (:data:`ORDER`), then tanh(c_t).
    """

    x: object
    inputs: list
    h: list
    c: list
    gates: list

    @property
    def final_state(self) -> list:
        """``[(h_T, c_T)]`` per layer, each (B, H_l): the next chunk's ``state``."""
        return [(h[-1].copy(), c[-1].copy()) for h, c in zip(self.h, self.c)]


# ---------------------------------------------------------------------- batch-major steps
def lstm_step(z, c_prev, gates, c_next, tanh_c, h_next):
    """One LSTM step from the full pre-activation ``z : (B, 4H)`` (input and recurrent terms and
    bias summed, PyTorch's gate order), writing the activated gates into ``gates : (B, 4H)`` and
    c_t, tanh(c_t), h_t into ``c_next``, ``tanh_c``, ``h_next : (B, H)``."""
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
    """BPTT through one batch-major step: from dLoss/dh_t ``dh`` and dLoss/dc_t ``dc`` (both
    (B, H), the latter updated in place to dLoss/dc_{t-1}), write dLoss/dz_t into
    ``dz : (B, 4H)``."""
    H = dh.shape[-1]
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    dc += dh * o * (1 - tanh_c * tanh_c)
    dz[:, :H] = dc * g * i * (1 - i)
    dz[:, H:2 * H] = dc * c_prev * f * (1 - f)
    dz[:, 2 * H:3 * H] = dc * i * (1 - g * g)
    dz[:, 3 * H:] = dh * tanh_c * o * (1 - o)
    dc *= f


def lstm_step_rop(rz, r_c, gates, c_prev, tanh_c):
    """Forward-mode through one batch-major step: from R z_t ``rz : (B, 4H)`` and R c_{t-1}
    ``r_c`` return (R h_t, R c_t)."""
    H = r_c.shape[-1]
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    r_i = rz[:, :H] * i * (1 - i)
    r_f = rz[:, H:2 * H] * f * (1 - f)
    r_g = rz[:, 2 * H:3 * H] * (1 - g * g)
    r_o = rz[:, 3 * H:] * o * (1 - o)
    r_c_next = r_f * c_prev + f * r_c + r_i * g + i * r_g
    r_h_next = r_o * tanh_c + o * (1 - tanh_c * tanh_c) * r_c_next
    return r_h_next, r_c_next


# ---------------------------------------------------------------------- feature-major steps
# ---------------------------------------------------------------------- feature-major steps
@dataclasses.dataclass(frozen=True)
class Scratch:
    """The scratch arrays and constants of one feature-major loop, made once per layer and
    pass so that the steps allocate nothing.

    Attributes
    ----------
    tmp : (H, B)
    d : (G H, B)
    one, half : 0-d arrays of the dtype (a ufunc converts a Python scalar on every call)
    """

    tmp: object
    d: object
    one: object
    half: object

    @classmethod
    def make(cls, rows: int, H: int, B: int, dtype) -> "Scratch":
        xp = backend.get_xp()
        return cls(xp.empty((H, B), dtype=dtype), xp.empty((rows, B), dtype=dtype),
                   xp.full((), 1.0, dtype=dtype), xp.full((), 0.5, dtype=dtype))


def lstm_step_fm(a, c_prev, c_next, h_next, ws):
    """One feature-major step. Rows [0, 4H) of ``a : (5H, B)`` hold the pre-activations in the
    order o, i, f, g, the sigmoid rows halved (z_o / 2, z_i / 2, z_f / 2, z_g); they are
    activated in place, and tanh(c_t) goes into rows [4H, 5H). c_t and h_t go into ``c_next``
    and ``h_next`` ((H, B); ``h_next`` may be a strided view); ``ws`` is a :class:`Scratch`.
    Eight elementwise calls."""
    xp = backend.get_xp()
    H = c_prev.shape[0]
    q = a[:4 * H]
    xp.tanh(q, out=q)
    sig = a[:3 * H]
    xp.multiply(sig, ws.half, out=sig)  # sigma(z) = 0.5 tanh(z / 2) + 0.5
    xp.add(sig, ws.half, out=sig)
    o, i, f, g, tanh_c = (a[k * H:(k + 1) * H] for k in range(5))
    xp.multiply(f, c_prev, out=c_next)
    xp.multiply(i, g, out=ws.tmp)
    xp.add(c_next, ws.tmp, out=c_next)
    xp.tanh(c_next, out=tanh_c)
    xp.multiply(o, tanh_c, out=h_next)


def lstm_step_backward_fm(dh, dc, a, c_prev, dz, ws):
    """BPTT through one feature-major step. From ``a : (5H, B)`` (``[o, i, f, g, tanh(c_t)]``
    of the step), c_{t-1}, dLoss/dh_t ``dh`` and the part of dLoss/dc_t that arrives from step
    t + 1 ``dc`` (all (H, B)), write dLoss/dz_t into ``dz : (4H, B)`` (rows o, i, f, g; a
    strided column block of a time-minor array is fine) and update ``dc`` in place to the part
    of dLoss/dc_{t-1} through c_t; ``ws`` is a :class:`Scratch` (``d`` of 5H rows). Eleven
    elementwise calls::

        dLoss/dc_t = dc + dh o (1 - tanh(c_t)^2)
        dz = [dh tanh(c_t) o (1 - o),  dLoss/dc_t g i (1 - i),  dLoss/dc_t c_{t-1} f (1 - f),
              dLoss/dc_t i (1 - g^2)]
        dc <- dLoss/dc_t f
    """
    xp = backend.get_xp()
    H, B = dh.shape
    d, tmp = ws.d, ws.tmp
    d5, a5, dz4 = d.reshape(5, H, B), a.reshape(5, H, B), dz.reshape(4, H, B)
    xp.multiply(a, a, out=d)
    xp.subtract(a[:3 * H], d[:3 * H], out=d[:3 * H])  # s (1 - s) for o, i, f
    xp.subtract(ws.one, d[3 * H:], out=d[3 * H:])  # 1 - g^2, 1 - tanh(c_t)^2
    pair = d5[1:4:2]  # (i, g): d c_t / d z_i = g i (1 - i), d c_t / d z_g = i (1 - g^2)
    xp.multiply(pair, a5[3:0:-2], out=pair)
    pair = d5[0:5:4]  # (o, tanh c): d h_t / d z_o = tanh(c_t) o (1 - o), d h_t / d c_t
    xp.multiply(pair, a5[4::-4], out=pair)
    xp.multiply(d5[2], c_prev, out=d5[2])  # d c_t / d z_f = c_{t-1} f (1 - f)
    xp.multiply(dh, d5[4], out=tmp)
    xp.add(dc, tmp, out=dc)  # dLoss/dc_t
    xp.multiply(d5[1:4], dc, out=dz4[1:4])
    xp.multiply(d5[0], dh, out=dz4[0])
    xp.multiply(dc, a5[2], out=dc)


def lstm_step_rop_fm(rz, r_c, a, c_prev, r_h, ws):
    """Forward-mode through one feature-major step: ``a : (5H, B)`` as in
    :func:`lstm_step_backward_fm`; ``rz : (4H, B)`` holds R z_t (rows o, i, f, g) and is
    overwritten; ``r_c`` (R c_{t-1}, (H, B)) becomes R c_t in place and R h_t goes into
    ``r_h`` (a strided view is fine); ``ws`` is a :class:`Scratch`::

        R c_t = R f c_{t-1} + f R c_{t-1} + R i g + i R g
        R h_t = R o tanh(c_t) + o (1 - tanh(c_t)^2) R c_t
    """
    xp = backend.get_xp()
    H = r_c.shape[0]
    d, tmp = ws.d, ws.tmp
    o, i, f, g, tanh_c = (a[k * H:(k + 1) * H] for k in range(5))
    xp.multiply(a, a, out=d)
    xp.subtract(a[:3 * H], d[:3 * H], out=d[:3 * H])  # s (1 - s)
    xp.subtract(ws.one, d[3 * H:], out=d[3 * H:])  # 1 - g^2, 1 - tanh(c_t)^2
    xp.multiply(rz, d[:4 * H], out=rz)  # [R o, R i, R f, R g]
    r_o, r_i, r_f, r_g = (rz[k * H:(k + 1) * H] for k in range(4))
    xp.multiply(f, r_c, out=r_c)
    for u, w in ((r_f, c_prev), (r_i, g), (i, r_g)):
        xp.multiply(u, w, out=tmp)
        xp.add(r_c, tmp, out=r_c)
    xp.multiply(o, d[4 * H:], out=tmp)  # d h_t / d c_t
    xp.multiply(tmp, r_c, out=tmp)
    xp.multiply(r_o, tanh_c, out=r_h)
    xp.add(r_h, tmp, out=r_h)


# ---------------------------------------------------------------------- layout helpers
def stacked_weights(params: dict, i: int, order, bias: bool):
    """``[W_rec | W_in | b]`` of layer ``i`` with its gate blocks in ``order`` (indices of the
    parameters' blocks), a new (G H, K) array, K = H + fan_in (+ 1 with a bias): the left
    operand of the feature-major per-step GEMM."""
    xp = backend.get_xp()
    w_rec, w_in = params[f"layer{i}.W_rec"], params[f"layer{i}.W_in"]
    H, fan_in = w_rec.shape[1], w_in.shape[1]
    w = xp.empty((len(order) * H, H + fan_in + (1 if bias else 0)), dtype=w_rec.dtype)
    for dst, src in enumerate(order):
        rows, from_rows = slice(dst * H, (dst + 1) * H), slice(src * H, (src + 1) * H)
        w[rows, :H] = w_rec[from_rows]
        w[rows, H:H + fan_in] = w_in[from_rows]
        if bias:
            w[rows, H + fan_in] = params[f"layer{i}.b"][from_rows]
    return w


def unstack_gradient(d_w, H: int, fan_in: int, order, bias: bool):
    """The gradients of (W_rec, W_in, b) (new arrays in the parameters' layout; b None without a
    bias) from that of ``[W_rec | W_in | b]`` built by :func:`stacked_weights` with ``order``."""
    xp = backend.get_xp()
    G = len(order)
    d_rec = xp.empty((G * H, H), dtype=d_w.dtype)
    d_in = xp.empty((G * H, fan_in), dtype=d_w.dtype)
    d_b = xp.empty(G * H, dtype=d_w.dtype) if bias else None
    for dst, src in enumerate(order):
        rows, to_rows = slice(dst * H, (dst + 1) * H), slice(src * H, (src + 1) * H)
        d_rec[to_rows] = d_w[rows, :H]
        d_in[to_rows] = d_w[rows, H:H + fan_in]
        if bias:
            d_b[to_rows] = d_w[rows, H + fan_in]
    return d_rec, d_in, d_b


def carve(shapes, dtype) -> list:
    """New arrays of the given shapes, views of one allocation (C-contiguous each).

    Why one block: glibc's allocator raises its mmap and trim thresholds to the largest block
    freed, so one block for a forward's whole cache keeps the memory a training step frees in
    the heap for the next step, instead of returning it to the system and taking first-touch
    page faults on it again (measured 3000-5000 faults per step, ~1-2 us each here, at the
    benchmark's char-LM shape with one array per part)."""
    xp = backend.get_xp()
    sizes = [math.prod(shape) for shape in shapes]
    block = xp.empty(sum(sizes), dtype=dtype)
    out, start = [], 0
    for shape, size in zip(shapes, sizes):
        out.append(block[start:start + size].reshape(shape))
        start += size
    return out


def stacked_inputs(below, H: int, bias: bool, h0=None, out=None):
    """The right operands of a layer's per-step GEMMs for all steps, time-minor
    ``(K, T + 1, B)``: column block t is ``[h_t; below_{t+1}; 1]``, with h_0 = ``h0`` ((B, H),
    zeros if None) and the h rows of steps 1..T left for the forward loop to fill. ``below :
    (fan_in, T, B)`` is the layer's input, time-minor (``x.transpose(2, 0, 1)``, or the h rows
    of the layer below's inputs). ``out`` is where to write them (allocated if None)."""
    xp = backend.get_xp()
    fan_in, T, B = below.shape
    K = H + fan_in + (1 if bias else 0)
    inputs = xp.empty((K, T + 1, B), dtype=below.dtype) if out is None else out
    inputs[:H, 0] = 0 if h0 is None else h0.T
    inputs[H:H + fan_in, :T] = below
    inputs[H:, T] = 0  # never read by a GEMM; defined all the same
    if bias:
        inputs[K - 1, :T] = 1
    return inputs


def columns(a):
    """A time-minor ``(K, T, B)`` array, or a slice of one along T, as the (K, T B) matrix it
    is (a view when the last two axes are contiguous, else a copy)."""
    K, T, B = a.shape
    return a.reshape(K, T * B)


class ChunkedProducts:
    """The sums over steps that BPTT needs from dLoss/dz_t, the weight gradients
    ``sum_t dz_t[rows_k] operand_k[:, t]^T``, and optionally ``left^T dz_t`` per step (dLoss/d(the
    layer's input)), computed a chunk of steps at a time.

    The loop writes dz_t, step-major, into :meth:`buffer`; when a chunk is complete, its steps
    are copied time-minor (a cache-resident copy of rows of B values) and multiplied in GEMMs
    over the chunk's columns. Whole-sequence dz arrays plus a time-minor copy of them measured
    ~3000 first-touch page faults per training step at the benchmark's char-LM shape (~10% of
    the step), and writing dz_t straight into a time-minor array made the loop 40% slower
    (rows a page apart).

    Parameters
    ----------
    rows : int
        Rows of dz_t.
    T, B : int
    dtype
    products : list of (slice, operand)
        A block of dz's rows and the operand it multiplies: ``operand : (K, T + 1, B)``
        time-minor (or a slice of one), step t's columns ``operand[:, t]``; their gradient
        ``(rows in the block, K)`` is in :attr:`gradients`, in this order.
    left : (rows, n) or None
        For ``left^T dz_t`` per step, in :attr:`through` (T, n, B), step-major.
    """

    #: columns (steps x B) per chunk's GEMMs, and the most bytes of dz a chunk holds (1 MiB: the
    #: step's transient memory then stays below what glibc keeps, see :func:`carve`)
    columns_per_gemm = 1024
    max_bytes = 1 << 20

    def __init__(self, rows: int, T: int, B: int, dtype, products, left=None):
        xp = backend.get_xp()
        itemsize = backend.numpy.dtype(dtype).itemsize
        self.steps = max(1, min(self.columns_per_gemm // B,
                                self.max_bytes // (rows * B * itemsize), T))
        self.dz = xp.empty((self.steps, rows, B), dtype=dtype)
        self.cols = xp.empty((rows, self.steps, B), dtype=dtype)
        self.products, self.left, self.T, self.B = products, left, T, B
        self.gradients = [None] * len(products)
        self._parts = [None] * len(products)
        self.through = None if left is None else xp.empty((T, left.shape[1], B), dtype=dtype)

    def buffer(self, t: int):
        """Where the loop writes dz_t, (rows, B)."""
        return self.dz[t % self.steps]

    def done(self, t: int) -> None:
        """dz_t is written (the loop runs t = T-1..0); at a chunk's first step, use the chunk."""
        if t % self.steps:
            return
        xp = backend.get_xp()
        n = min(self.steps, self.T - t)
        cols = self.cols[:, :n]
        cols[...] = self.dz[:n].transpose(1, 0, 2)
        flat = columns(cols)
        for k, (rows, operand) in enumerate(self.products):
            product = (flat[rows], columns(operand[:, t:t + n]).T)
            if self.gradients[k] is None:  # the first chunk (the last steps)
                self.gradients[k] = xp.matmul(*product)
                continue
            if self._parts[k] is None:
                self._parts[k] = xp.empty_like(self.gradients[k])
            xp.matmul(*product, out=self._parts[k])
            xp.add(self.gradients[k], self._parts[k], out=self.gradients[k])
        if self.left is not None:
            self.through[t:t + n] = (self.left.T @ flat).reshape(-1, n, self.B).transpose(1, 0, 2)


def readout_forward(outputs: str, w_out, top_h, b_out=None):
    """y = W_out h_t (+ b_out) from the top layer's time-minor h ``top_h : (H, T + 1, B)``:
    (B, n_out) for outputs "last", else (T, B, n_out), one GEMM over all T B columns."""
    H, T1, B = top_h.shape
    if outputs == "last":
        y = top_h[:, -1].T @ w_out.T
    else:
        y = (columns(top_h[:, 1:]).T @ w_out.T).reshape(T1 - 1, B, -1)
    if b_out is not None:
        y += b_out
    return y


def readout_backward_tm(spec, params: dict, dy, top_h, T: int, B: int):
    """BPTT through the output layer for the top layer's time-minor h ``top_h : (H, T + 1, B)``
    (the batch-major form is :func:`rnnlab.models.base.readout_backward`).

    Returns ``(grads, d_last, dy_steps)``: the gradients of ``out.W`` (and ``out.b``), and
    what reaches the top layer: for outputs "last" ``d_last = W_out^T dy^T : (H, B)``, at step
    T only; else ``dy_steps : (T, n_out, B)`` (a view of dy), of which the backward loop takes
    W_out^T dy_steps[t] step by step (a (T, H, B) array of them would be one more array per
    unit, and the step's transient memory would outgrow what glibc keeps, see :func:`carve`);
    the other is None."""
    grads, w_out = {}, params["out.W"]
    if spec.outputs == "last":
        grads["out.W"] = dy.T @ top_h[:, T].T
        d_last, dy_steps = w_out.T @ dy.T, None
    else:
        grads["out.W"] = dy.reshape(T * B, spec.n_out).T @ columns(top_h[:, 1:]).T
        d_last, dy_steps = None, dy.transpose(0, 2, 1)
    if spec.bias:
        grads["out.b"] = dy.reshape(-1, spec.n_out).sum(axis=0)
    return grads, d_last, dy_steps


def add_extra(d_above, d_hidden):
    """dLoss/dh from above (step-major (T, H, B), or None) plus an extra (T, B, H) gradient
    (structural damping's; None for none)."""
    if d_hidden is None:
        return d_above
    extra = d_hidden.transpose(0, 2, 1)  # contiguous when it comes from this module's R-op
    return extra if d_above is None else d_above + extra


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
        """out = below @ W_in^T + b, all T steps in one batch-major GEMM; ``below : (T, B,
        fan_in)``, ``out : (T, B, 4H)`` (for the batch-major cells built on this one)."""
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
        below = x.transpose(2, 0, 1)
        ins, cs, gs = [], [], []
        fan_ins = (s.n_in,) + s.hidden[:-1]
        arrays = carve([shape for H, n in zip(s.hidden, fan_ins) for shape in (
            (H + n + (1 if s.bias else 0), T + 1, B), (T + 1, H, B), (T, (GATES + 1) * H, B))],
            dtype)
        for i, H in enumerate(s.hidden, start=1):
            h0, c0 = (None, None) if state is None else state[i - 1]
            inputs, c, gates = arrays[3 * (i - 1):3 * i]
            stacked_inputs(below, H, s.bias, h0, out=inputs)
            c[0] = 0 if c0 is None else c0.T
            w = stacked_weights(params, i, ORDER, s.bias)
            w[:3 * H] *= 0.5  # sigmoid rows: the step's one tanh gives tanh(z / 2) there
            ws = Scratch.make((GATES + 1) * H, H, B, dtype)
            matmul = xp.matmul
            # views split off once: indexing in the loop costs as much as an elementwise call
            columns_t = list(inputs.transpose(1, 0, 2))  # step t's GEMM operand (K, B)
            for a, operand, c_prev, c_next, h_next in zip(
                    list(gates), columns_t[:T], list(c[:T]), list(c[1:]), columns_t[1:]):
                matmul(w, operand, out=a[:GATES * H])
                lstm_step_fm(a, c_prev, c_next, h_next[:H], ws)
            ins.append(inputs), cs.append(c), gs.append(gates)
            below = inputs[:H, 1:]
        y = readout_forward(s.outputs, params["out.W"], ins[-1][:s.hidden[-1]],
                            params.get("out.b"))
        return y, LSTMCache(x=x, inputs=ins, h=[a[:H].transpose(1, 2, 0)
                                                for a, H in zip(ins, s.hidden)],
                            c=[c.transpose(0, 2, 1) for c in cs], gates=gs)

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
        return self._backward(params, dy, cache, d_final_state, d_hidden)

    def hidden_gradients(self, params: dict, dy, cache: LSTMCache) -> list:
        """dLoss/dh_t for t = 1..T per layer, as BPTT computes it: the total gradient reaching
        each hidden output through the readout, the layer above and all later steps (through
        h_{t+1} and c_{t+1}).

        Parameters
        ----------
        dy : like the forward's y
        cache : LSTMCache
            From :meth:`forward`.

        Returns
        -------
        list of d arrays (T, B, H_l)
        """
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
        expected = (B, s.n_out) if s.outputs == "last" else (T, B, s.n_out)
        validate.float_array("dy", dy, shape=expected, finite=False)
        if d_final_state is not None:
            self._check_pairs("d_final_state", d_final_state, B)
        check_d_hidden(s, d_hidden, T, B)
        top = cache.inputs[-1][:s.hidden[-1]]
        grads, d_last, dy_steps = readout_backward_tm(s, params, dy, top, T, B)
        w_out_t, d_above = params["out.W"].T, None
        d_state, recorded = [None] * s.layers, [None] * s.layers
        for i in range(s.layers, 0, -1):
            H = s.hidden[i - 1]
            inputs, c = cache.inputs[i - 1], cache.c[i - 1].transpose(0, 2, 1)
            gates = cache.gates[i - 1]
            K = inputs.shape[0]
            fan_in = K - H - (1 if s.bias else 0)
            dh = xp.zeros((H, B), dtype=dtype)
            dc = xp.zeros((H, B), dtype=dtype)
            if d_final_state is not None:
                dh += d_final_state[i - 1][0].T
                dc += d_final_state[i - 1][1].T
            if d_last is not None:
                dh += d_last
            d_above = add_extra(d_above, None if d_hidden is None else d_hidden[i - 1])
            readout = dy_steps if i == s.layers else None
            w = stacked_weights(params, i, ORDER, s.bias)
            # dLoss/dh_{t-1} = W_rec^T dz_t with a contiguous W_rec^T: the transposed view
            # measured up to 1.8x slower in the GEMM (H = 1024)
            w_rec_t = _transposed(w[:, :H])
            sums = ChunkedProducts(GATES * H, T, B, dtype, [(slice(None), inputs)],
                                   left=w[:, H:H + fan_in] if i > 1 else None)
            rec = None if record is None else xp.empty((T, H, B), dtype=dtype)
            ws = Scratch.make((GATES + 1) * H, H, B, dtype)
            add, matmul = xp.add, xp.matmul
            for t in range(T - 1, -1, -1):
                if d_above is not None:
                    add(dh, d_above[t], out=dh)
                if readout is not None:  # W_out^T dy_t
                    matmul(w_out_t, readout[t], out=ws.tmp)
                    add(dh, ws.tmp, out=dh)
                if rec is not None:
                    rec[t] = dh
                dz = sums.buffer(t)
                lstm_step_backward_fm(dh, dc, gates[t], c[t], dz, ws)
                matmul(w_rec_t, dz, out=dh)
                sums.done(t)
            if rec is not None:
                recorded[i - 1] = rec.transpose(0, 2, 1)
            d_state[i - 1] = (xp.ascontiguousarray(dh.T), xp.ascontiguousarray(dc.T))
            d_rec, d_in, d_b = unstack_gradient(sums.gradients[0], H, fan_in, ORDER, s.bias)
            grads[f"layer{i}.W_rec"], grads[f"layer{i}.W_in"] = d_rec, d_in
            if s.bias:
                grads[f"layer{i}.b"] = d_b
            d_above, d_last = sums.through, None  # dLoss/d(layer below's h_t)
        if record is not None:
            record.extend(recorded)
        return {k: grads[k] for k in params}, d_state

    # ------------------------------------------------------------------ R-op
    def rop(self, params: dict, v: dict, cache: LSTMCache):
        """Forward-mode J v along ``v`` (keys of ``params``), the initial state constant.

        Returns
        -------
        r_y : like y
        r_h : list of (T + 1, B, H_l)
            R h_t per layer (``r_h[l][0]`` is zero); views of feature-major (T + 1, H_l, B)
            arrays.
        """
        xp = backend.get_xp()
        s = self.spec
        dtype = self._check_params(params, v)
        T, B = self._check_cache(cache, dtype)
        r_below, r_hs = None, []
        for i, H in enumerate(s.hidden, start=1):
            inputs, c = cache.inputs[i - 1], cache.c[i - 1].transpose(0, 2, 1)
            gates = cache.gates[i - 1]
            w = stacked_weights(params, i, ORDER, s.bias)
            fan_in = inputs.shape[0] - H - (1 if s.bias else 0)
            # R z_t = V [h_{t-1}; below_t; 1] + W_in R below_t + W_rec R h_{t-1}: all but the
            # last term for all steps before the loop, step-major (T, 4H, B)
            r_pre = (stacked_weights(v, i, ORDER, s.bias) @ columns(inputs[:, :T])).reshape(
                GATES * H, T, B).transpose(1, 0, 2).copy()
            if r_below is not None:
                r_pre += xp.matmul(w[:, H:H + fan_in], r_below)
            w_rec = w[:, :H]
            r_h = xp.zeros((T + 1, H, B), dtype=dtype)
            r_c = xp.zeros((H, B), dtype=dtype)
            rz = xp.empty((GATES * H, B), dtype=dtype)
            ws = Scratch.make((GATES + 1) * H, H, B, dtype)
            for t in range(T):
                xp.matmul(w_rec, r_h[t], out=rz)
                xp.add(rz, r_pre[t], out=rz)
                lstm_step_rop_fm(rz, r_c, gates[t], c[t], r_h[t + 1], ws)
            r_hs.append(r_h)
            r_below = r_h[1:]
        top, r_top = cache.inputs[-1][:s.hidden[-1]], r_hs[-1].transpose(1, 0, 2)
        r_y = readout_forward(s.outputs, v["out.W"], top, v.get("out.b"))
        r_y += readout_forward(s.outputs, params["out.W"], r_top)
        return r_y, [r.transpose(0, 2, 1) for r in r_hs]

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
            New arrays in the memory order of ``r_hidden`` (feature-major for this model's
            R-op, which :meth:`backward` then reads without a copy).
        """
        if form == "matching":
            raise ConfigError("structural_form 'matching' (Martens & Sutskever 2011's matching "
                              "loss of one hidden nonlinearity) is not defined for gated cells "
                              "such as the LSTM; use structural_form 'hidden'")
        validate.choice("form", form, ("hidden",))
        return [r_h[1:].copy(order="K") for r_h in r_hidden]
