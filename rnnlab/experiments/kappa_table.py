"""The kappa^(2) / kappa^(1) table of ``path-sgd-relu-rnn.md`` Fig. 2, recomputed.

Section 5.1 of the paper compares "the ratio of the norms ||kappa^(2)||_2 / ||kappa^(1)||_2 for
different RNN lengths T and number of hidden units H" and concludes that the second term "can be
safely ignored"; the caption of Fig. 2 gives the setting: a single-layer ReLU RNN for word-level
language modelling on PTB (vocabulary 10k), every weight drawn from U[-0.1, 0.1]. The figure's
numbers are an image, not in the text copy, so this module recomputes the table.

What is computed, for each length T, width H and seed:

* the network: one ReLU layer of H units, ``n_in = n_out = 10000`` (one-hot words in, one score
  per word out: the PTB vocabulary of the caption), outputs at every step (a language model reads
  every step), biases on the hidden layer and the output, and every parameter -- biases included
  ("we initialize the weights", no exception stated) -- drawn from U[-a, a], a = 0.1. The same
  draw (per H and seed) is used for every T. ``--n-in/--n-out/--bias`` change this;
* kappa^(1) by :func:`rnnlab.paths.norms.kappa1_fast` (Theorem 3), kappa^(2) by the corrected
  matrix form :func:`~rnnlab.paths.norms.kappa2_fast` and, beside it, by the form printed in
  Section 4.4, :func:`~rnnlab.paths.norms.kappa2_paper_matrix_form` (a factor 4 smaller and
  paired one step off: not proportional to the true term);
* the ratio ``||kappa^(2)||_2 / ||kappa^(1)||_2`` with both norms over ALL parameters (measure
  ``"all"``): kappa is the vector with one entry per parameter (Eq. 8) and the paper writes the
  plain vector norm. kappa^(2) is zero outside W_rec, so only the denominator depends on this
  reading; the other reading, both norms over W_rec only (``"W_rec"``), is offered with
  ``--norm W_rec`` and is always in the CSV. The CSV also holds ``"W_rec_entry_max"``,
  max_{j,k} kappa2[j,k] / kappa1[j,k] over W_rec: dropping kappa^(2) enlarges that coordinate's
  Path-SGD step by 1 + this factor, so it bounds what ignoring the term changes.

Norms are taken with a scale (max |x|) factored out, so kappa entries up to the float64 limit
give finite ratios; a grid point whose kappa overflowed (supercritical W~, long T) is NaN and
shows as "overflow".

Command line (wired into ``rnnlab`` by the CLI as ``kappa-table``; also
``python -m rnnlab.experiments.kappa_table``)::

    rnnlab kappa-table              # T 10,20,50,100 x H 10,25,50,100,200, 5 seeds (10-30 s)
    rnnlab kappa-table --T 10,100,400 --H 2,10,100,400 --seeds 0,1,2 --out runs/kappa_big
    rnnlab kappa-table --init-scale 0.3 --norm W_rec --form corrected

It prints the markdown table and writes ``kappa_table.md``, ``kappa_table.csv`` (summary per
grid point), ``kappa_table_seeds.csv`` (every seed) and ``kappa_table.png`` (heat-maps) into
``--out``. Building the parser imports nothing heavy: the path modules, matplotlib and tqdm are
imported when the table is computed or drawn.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import os
import sys
import time

import numpy as np  # already loaded by ``import rnnlab``; the heavy imports are deferred

from ..errors import ConfigError, SinkError
from ..argtypes import int_at_least

DEFAULT_T = (10, 20, 50, 100)
DEFAULT_H = (10, 25, 50, 100, 200)   # 200: the width of the Fig. 2 ablation
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
DEFAULT_SCALE = 0.1          # U[-0.1, 0.1], Fig. 2 caption
PTB_VOCAB = 10_000           # Fig. 2 caption: vocabulary size of 10k words
DEFAULT_OUT = os.path.join("runs", "kappa_table")

FORMS = ("corrected", "paper")           # kappa2_fast, kappa2_paper_matrix_form
FORM_LABELS = {"corrected": "corrected (kappa2_fast)",
               "paper": "printed Section 4.4 form (kappa2_paper_matrix_form)"}
NORMS = ("all", "W_rec")                 # what the table and heat-map show
MEASURES = NORMS + ("W_rec_entry_max",)  # what the CSV holds
BIAS_MODES = ("uniform", "zero", "none")
MAX_PARAMETERS = 50_000_000              # ~400 MB per float64 copy; kappa makes several copies

FILES = {"markdown": "kappa_table.md", "csv": "kappa_table.csv",
         "seeds_csv": "kappa_table_seeds.csv", "figure": "kappa_table.png"}


# ----------------------------------------------------------------------------- the network
def figure2_spec(H: int, *, n_in: int = PTB_VOCAB, n_out: int = PTB_VOCAB,
                 bias: str = "uniform"):
    """The single-layer ReLU RNN of Fig. 2: ``n_in`` inputs, H hidden, ``n_out`` outputs, an
    output at every step, biases unless ``bias == "none"``."""
    from ..models.elman import ElmanSpec
    _check_choice("bias", bias, BIAS_MODES)
    return ElmanSpec(n_in, (H,), n_out, "relu", bias != "none", "every")


def draw_params(spec, seed: int, scale: float = DEFAULT_SCALE, *, bias: str = "uniform") -> dict:
    """Every parameter of ``spec`` drawn from U[-scale, scale] (float64 host arrays), in the
    order of ``spec.param_shapes()`` from ``numpy.random.default_rng(seed)``; with
    ``bias="zero"`` the biases are drawn and then set to 0, so the weights equal the uniform
    draw's."""
    _check_choice("bias", bias, BIAS_MODES)
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in spec.param_shapes().items():
        w = rng.uniform(-scale, scale, size=shape)
        params[name] = np.zeros(shape) if (bias == "zero" and name.endswith(".b")) else w
    return params


# ----------------------------------------------------------------------------- one grid point
def _norm(x: np.ndarray) -> float:
    """The 2-norm of ``x`` with its scale factored out (finite for any finite entries); NaN if
    an entry is not finite."""
    if not np.all(np.isfinite(x)):
        return math.nan
    m = float(np.max(np.abs(x))) if x.size else 0.0
    return 0.0 if m == 0.0 else m * float(np.linalg.norm(x / m))


def _ratio(num: float, den: float) -> float:
    if math.isnan(num) or math.isnan(den) or den == 0.0:
        return math.nan
    return num / den


def point_ratios(spec, params, T: int, forms=FORMS) -> dict:
    """The measures of one network at one length: ``{(form, measure): value}`` for ``form`` in
    ``forms`` and ``measure`` in :data:`MEASURES`.

    ``"all"``: ||kappa2||_2 / ||kappa1||_2 over every parameter; ``"W_rec"``: the same over
    ``layer1.W_rec`` only; ``"W_rec_entry_max"``: max over W_rec entries of kappa2 / kappa1.
    kappa1 is :func:`~rnnlab.paths.norms.kappa1_fast`, kappa2 :func:`kappa2_fast` (corrected) or
    :func:`kappa2_paper_matrix_form` (paper).
    """
    from ..params import host_vector
    from ..paths import norms

    fns = {"corrected": norms.kappa2_fast, "paper": norms.kappa2_paper_matrix_form}
    out = {}
    with np.errstate(over="ignore", invalid="ignore"):   # overflow is reported as NaN
        k1 = norms.kappa1_fast(spec, params, T)
        k1_all = _norm(host_vector(k1, spec))
        k1_rec = k1["layer1.W_rec"]
        n1_rec = _norm(k1_rec)
        for form in forms:
            k2 = fns[form](spec, params, T)
            k2_rec = k2["layer1.W_rec"]
            n2 = _norm(host_vector(k2, spec))
            out[form, "all"] = _ratio(n2, k1_all)
            out[form, "W_rec"] = _ratio(_norm(k2_rec), n1_rec)
            ok = np.all(np.isfinite(k2_rec)) and np.all(np.isfinite(k1_rec)) and np.all(k1_rec > 0)
            out[form, "W_rec_entry_max"] = float(np.max(k2_rec / k1_rec)) if ok else math.nan
    return out


# ----------------------------------------------------------------------------- the grid
@dataclasses.dataclass(frozen=True)
class KappaTable:
    """The ratios over a grid.

    Attributes
    ----------
    T, H, seeds : tuples of int
        The grid (rows T, columns H) and the seeds averaged over.
    forms : tuple of str
        The kappa^(2) forms computed (:data:`FORMS`).
    values : dict (form, measure) -> ndarray (len(T), len(H), len(seeds))
        One value per seed (:func:`point_ratios`); NaN where kappa overflowed.
    settings : dict
        n_in, n_out, bias, init_scale.
    seconds : float
        Wall time of the computation.
    """

    T: tuple
    H: tuple
    seeds: tuple
    forms: tuple
    values: dict
    settings: dict
    seconds: float

    def summary(self, form: str, measure: str) -> dict:
        """Per grid point over seeds: ``mean``, ``std`` (ddof 1; 0 for one seed), ``min``,
        ``max``, each an (len(T), len(H)) array (NaN where any seed overflowed)."""
        v = self.values[form, measure]
        ddof = 1 if v.shape[2] > 1 else 0
        return {"mean": v.mean(axis=2), "std": v.std(axis=2, ddof=ddof),
                "min": v.min(axis=2), "max": v.max(axis=2)}

    def printed_over_corrected(self, measure: str) -> np.ndarray:
        """Per seed, the printed form's ratio divided by the corrected one's (same network)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.values["paper", measure] / self.values["corrected", measure]


def _check_choice(name, value, choices):
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def _check_grid_list(name, values, minimum):
    values = tuple(values) if not isinstance(values, (int, np.integer)) else (values,)
    if not values:
        raise ConfigError(f"{name} must list at least one integer >= {minimum}; got ()")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
            raise ConfigError(f"{name} must hold integers >= {minimum}; got {v!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{name} lists a value twice: {list(values)}")
    return tuple(sorted(int(v) for v in values))


def check_grid(T, H, seeds, *, init_scale, n_in, n_out, bias, forms):
    """The validated grid (sorted tuples) or a one-line ConfigError naming the setting."""
    T = _check_grid_list("T", T, 2)   # T = 1: kappa1(W_rec) = 0, the W_rec ratio is 0/0
    H = _check_grid_list("H", H, 1)
    seeds = _check_grid_list("seeds", seeds, 0)
    if isinstance(init_scale, bool) or not isinstance(init_scale, (int, float)) \
            or not math.isfinite(init_scale) or init_scale <= 0:
        raise ConfigError(f"init_scale must be a finite number > 0; got {init_scale!r}")
    for name, v in (("n_in", n_in), ("n_out", n_out)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{name} must be an integer >= 1; got {v!r}")
    _check_choice("bias", bias, BIAS_MODES)
    forms = tuple(forms)
    if not forms or any(f not in FORMS for f in forms) or len(set(forms)) != len(forms):
        raise ConfigError(f"forms must be distinct values among {', '.join(FORMS)}; "
                          f"got {list(forms)}")
    width = max(H)
    size = width * (n_in + width + n_out) + (width + n_out if bias != "none" else 0)
    if size > MAX_PARAMETERS:
        raise ConfigError(f"H = {width} with n_in = {n_in}, n_out = {n_out} has {size:,} "
                          f"parameters, above the {MAX_PARAMETERS:,} this table allows (kappa "
                          "keeps several float64 copies); lower --H or --n-in/--n-out")
    return T, H, seeds, forms


def kappa_table(T=DEFAULT_T, H=DEFAULT_H, seeds=DEFAULT_SEEDS, *, init_scale=DEFAULT_SCALE,
                n_in=PTB_VOCAB, n_out=PTB_VOCAB, bias="uniform", forms=FORMS,
                progress=None) -> KappaTable:
    """The ratios of :func:`point_ratios` for every (T, H, seed) of the grid.

    For each H and seed one network is drawn (:func:`draw_params`) and evaluated at every T.
    ``progress`` is called with no argument after each (T, H, seed). Lists are sorted; a bad
    value is a one-line :class:`~rnnlab.errors.ConfigError`.
    """
    T, H, seeds, forms = check_grid(T, H, seeds, init_scale=init_scale, n_in=n_in,
                                    n_out=n_out, bias=bias, forms=forms)
    values = {(f, m): np.full((len(T), len(H), len(seeds)), math.nan)
              for f in forms for m in MEASURES}
    start = time.perf_counter()
    for j, width in enumerate(H):
        spec = figure2_spec(width, n_in=n_in, n_out=n_out, bias=bias)
        for s, seed in enumerate(seeds):
            params = draw_params(spec, seed, init_scale, bias=bias)
            for i, length in enumerate(T):
                for key, value in point_ratios(spec, params, length, forms).items():
                    values[key][i, j, s] = value
                if progress is not None:
                    progress()
    settings = {"n_in": int(n_in), "n_out": int(n_out), "bias": bias,
                "init_scale": float(init_scale)}
    return KappaTable(T, H, seeds, forms, values, settings, time.perf_counter() - start)


# ----------------------------------------------------------------------------- output
def _g(x: float) -> str:
    return "overflow" if math.isnan(x) else f"{x:.3g}"


def _grid_markdown(table: KappaTable, cell) -> list:
    lines = ["| T \\ H | " + " | ".join(str(h) for h in table.H) + " |",
             "|--:|" + "--:|" * len(table.H)]
    for i, length in enumerate(table.T):
        lines.append(f"| {length} | " + " | ".join(cell(i, j) for j in range(len(table.H)))
                     + " |")
    return lines


def _describe(table: KappaTable) -> str:
    s = table.settings
    bias = {"uniform": "biases drawn like the weights", "zero": "biases present, set to 0",
            "none": "no biases"}[s["bias"]]
    return (f"single-layer ReLU RNN, n_in = {s['n_in']}, n_out = {s['n_out']}, outputs at every "
            f"step, {bias}; every weight U[-{s['init_scale']:g}, {s['init_scale']:g}]; "
            f"seeds {', '.join(map(str, table.seeds))}")


def markdown(table: KappaTable, norm: str = "all", command: str | None = None) -> str:
    """The table as markdown: per form, mean [min, max] over seeds of the ratio; with both
    forms, the printed/corrected factor; the largest per-entry kappa2/kappa1 of W_rec."""
    _check_choice("norm", norm, NORMS)
    over = "all parameters" if norm == "all" else "W_rec only"
    out = ["# ||kappa^(2)||_2 / ||kappa^(1)||_2 (path-sgd-relu-rnn.md Fig. 2)", "",
           f"{_describe(table)}. Norms over {over}. Cells: mean [min, max] over "
           f"{len(table.seeds)} seed(s). {table.seconds:.1f} s.", ""]
    if command:
        out += [f"    {command}", ""]
    for form in table.forms:
        st = table.summary(form, norm)
        out += [f"## kappa^(2): {FORM_LABELS[form]}", ""]
        out += _grid_markdown(table, lambda i, j: f"{_g(st['mean'][i, j])} "
                              f"[{_g(st['min'][i, j])}, {_g(st['max'][i, j])}]")
        out.append("")
    if set(FORMS) <= set(table.forms):
        q = table.printed_over_corrected(norm)
        out += ["## printed / corrected (per seed, then mean [min, max])", ""]
        out += _grid_markdown(table, lambda i, j: f"{_g(q[i, j].mean())} "
                              f"[{_g(q[i, j].min())}, {_g(q[i, j].max())}]")
        out.append("")
    form = "corrected" if "corrected" in table.forms else table.forms[0]
    st = table.summary(form, "W_rec_entry_max")
    out += [f"## largest kappa2[j,k] / kappa1[j,k] over W_rec ({form}; mean [max] over seeds)",
            "", "Dropping kappa^(2) enlarges that W_rec coordinate's Path-SGD step by "
            "1 + this factor.", ""]
    out += _grid_markdown(table, lambda i, j: f"{_g(st['mean'][i, j])} [{_g(st['max'][i, j])}]")
    return "\n".join(out) + "\n"


def write_csv(table: KappaTable, path: str, seeds_path: str | None = None) -> None:
    """The summary (one row per T, H, form, measure: mean, std, min, max over seeds) to
    ``path`` and, if given, every seed's value to ``seeds_path``."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["T", "H", "form", "measure", "mean", "std", "min", "max", "n_seeds",
                    "n_in", "n_out", "bias", "init_scale"])
        s = table.settings
        for (form, measure) in table.values:
            st = table.summary(form, measure)
            for i, length in enumerate(table.T):
                for j, width in enumerate(table.H):
                    w.writerow([length, width, form, measure]
                               + [repr(float(st[k][i, j])) for k in ("mean", "std", "min", "max")]
                               + [len(table.seeds), s["n_in"], s["n_out"], s["bias"],
                                  s["init_scale"]])
    if seeds_path is None:
        return
    with open(seeds_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["T", "H", "seed", "form", "measure", "value"])
        for (form, measure), v in table.values.items():
            for i, length in enumerate(table.T):
                for j, width in enumerate(table.H):
                    for k, seed in enumerate(table.seeds):
                        w.writerow([length, width, seed, form, measure, repr(float(v[i, j, k]))])


def heatmap_figure(table: KappaTable, norm: str = "all"):
    """One heat-map per form of log10(mean ratio) over (T, H), each cell labelled with the mean;
    a shared colour scale. Drawn on a :class:`matplotlib.figure.Figure` (no pyplot)."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    _check_choice("norm", norm, NORMS)
    means = {f: table.summary(f, norm)["mean"] for f in table.forms}
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = {f: np.where(m > 0, np.log10(m), np.nan) for f, m in means.items()}
    finite = np.concatenate([v[np.isfinite(v)] for v in logs.values()])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 0.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    scale = Normalize(vmin=lo, vmax=hi)
    cmap = colormaps["viridis"].with_extremes(bad="lightgray")   # NaN: overflow
    panel = max(4.2, 0.85 * len(table.H))          # room for each cell's label
    fontsize = 7 if len(table.H) <= 6 else 6
    fig = Figure(figsize=(1.6 + panel * len(table.forms), 0.9 + 0.45 * len(table.T) + 1.4),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(table.forms), squeeze=False)[0])
    image = None
    for ax, form in zip(axes, table.forms):
        grid = np.ma.masked_invalid(logs[form])
        image = ax.imshow(grid, cmap=cmap, norm=scale, aspect="auto", origin="lower")
        ax.set_xticks(range(len(table.H)), [str(h) for h in table.H])
        ax.set_yticks(range(len(table.T)), [str(t) for t in table.T])
        ax.set_xlabel("H (hidden units)")
        ax.set_ylabel("T (length)")
        ax.set_title({"corrected": "kappa2: corrected (kappa2_fast)",
                      "paper": "kappa2: printed Section 4.4 form"}[form], fontsize=10)
        for i in range(len(table.T)):
            for j in range(len(table.H)):
                value = means[form][i, j]
                finite = np.isfinite(logs[form][i, j])
                colour = "white" if finite and scale(logs[form][i, j]) < 0.5 else "black"
                ax.text(j, i, _g(value), ha="center", va="center", fontsize=fontsize,
                        color=colour)
    over = "all parameters" if norm == "all" else "W_rec"
    fig.colorbar(image, ax=list(axes), label=f"log10 ||kappa2|| / ||kappa1|| ({over})")
    s = table.settings
    fig.suptitle(f"||kappa2||/||kappa1||, U[-{s['init_scale']:g}, {s['init_scale']:g}], "
                 f"n_in={s['n_in']}, n_out={s['n_out']}, mean of {len(table.seeds)} seed(s)",
                 fontsize=10)
    return fig


# ----------------------------------------------------------------------------- command line
def _int_list(minimum: int):
    """An argparse ``type=``: a comma-separated list of distinct integers >= ``minimum``,
    returned sorted."""
    def convert(text: str) -> tuple:
        allowed = f"a comma-separated list of distinct integers >= {minimum}"
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {allowed}; got {text!r}")
        if not values or min(values) < minimum or len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"expected {allowed}; got {text!r}")
        return tuple(sorted(values))
    convert.__name__ = f"list of integers >= {minimum}"
    return convert


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0; got {text!r}")
    return value


_positive_float.__name__ = "number > 0"


def add_kappa_table_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``kappa-table`` options to an argparse parser (imports nothing heavy)."""
    parser.add_argument("--T", "-T", type=_int_list(2), default=DEFAULT_T,
                        help="comma-separated lengths >= 2 (default 10,20,50,100; at T = 1 "
                             "kappa1 of W_rec is 0 and the W_rec ratio undefined)")
    parser.add_argument("--H", type=_int_list(1), default=DEFAULT_H,
                        help="comma-separated hidden widths (default 10,25,50,100,200)")
    parser.add_argument("--seeds", type=_int_list(0), default=DEFAULT_SEEDS,
                        help="comma-separated seeds >= 0, one network each (default 0,1,2,3,4)")
    parser.add_argument("--init-scale", type=_positive_float, default=DEFAULT_SCALE,
                        help="a of U[-a, a] for every parameter (default 0.1, Fig. 2 caption)")
    parser.add_argument("--form", choices=("both",) + FORMS, default="both",
                        help="kappa^(2) by the corrected form, the printed Section 4.4 form, or "
                             "both side by side (default both)")
    parser.add_argument("--norm", choices=NORMS, default="all",
                        help="norms over all parameters (default; the paper's ||kappa||_2) or "
                             "over W_rec only, in the table and figure (the CSV has both)")
    parser.add_argument("--n-in", type=int_at_least(1), default=PTB_VOCAB,
                        help="input size (default 10000, the PTB vocabulary of Fig. 2)")
    parser.add_argument("--n-out", type=int_at_least(1), default=PTB_VOCAB,
                        help="output size (default 10000)")
    parser.add_argument("--bias", choices=BIAS_MODES, default="uniform",
                        help="biases drawn like the weights (default), zero, or none")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"folder for the .md, .csv and .png files (default {DEFAULT_OUT})")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: only on a terminal)")
    return parser


def _prepare_out(out: str) -> str:
    if not isinstance(out, str) or not out:
        raise ConfigError(f"--out must name a folder; got {out!r}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {out!r} is a file, not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise SinkError(f"cannot create --out folder {out!r}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK):
        raise SinkError(f"--out folder {out!r} is not writable")
    return out


def _command(args) -> str:
    def joined(v):
        return ",".join(map(str, v))
    return (f"python -m rnnlab kappa-table --T {joined(args.T)} --H {joined(args.H)} "
            f"--seeds {joined(args.seeds)} --init-scale {args.init_scale:g} --form {args.form} "
            f"--norm {args.norm} --n-in {args.n_in} --n-out {args.n_out} --bias {args.bias} "
            f"--out {args.out}")


def main_kappa_table(args=None) -> int:
    """Compute the table, print it as markdown and write the .md, .csv and .png files; 0.

    ``args`` is an argparse Namespace built with :func:`add_kappa_table_arguments`, or a list of
    command-line strings (None: ``sys.argv[1:]``). Bad settings raise a one-line
    :class:`~rnnlab.errors.ConfigError` (a :class:`~rnnlab.errors.SinkError` if ``--out``
    cannot be written) before anything is computed.
    """
    if args is None or isinstance(args, (list, tuple)):
        from ..cli import _Parser  # argparse errors as one line, exit 2
        parser = add_kappa_table_arguments(_Parser(
            prog="rnnlab kappa-table",
            description="the ||kappa2|| / ||kappa1|| table of path-sgd-relu-rnn.md Fig. 2"))
        args = parser.parse_args(args)
    forms = FORMS if args.form == "both" else (args.form,)
    grid = check_grid(args.T, args.H, args.seeds, init_scale=args.init_scale, n_in=args.n_in,
                      n_out=args.n_out, bias=args.bias, forms=forms)
    _check_choice("norm", args.norm, NORMS)
    out = _prepare_out(args.out)

    from tqdm.auto import tqdm
    total = len(grid[0]) * len(grid[1]) * len(grid[2])
    disable = None if getattr(args, "progress", None) is None else not args.progress
    with tqdm(total=total, desc="kappa table", unit="net", disable=disable, leave=False) as bar:
        table = kappa_table(*grid[:3], init_scale=args.init_scale, n_in=args.n_in,
                            n_out=args.n_out, bias=args.bias, forms=forms,
                            progress=lambda: bar.update(1))
    text = markdown(table, args.norm, command=_command(args))
    paths = {k: os.path.join(out, v) for k, v in FILES.items()}
    try:
        with open(paths["markdown"], "w") as f:
            f.write(text)
        write_csv(table, paths["csv"], paths["seeds_csv"])
        heatmap_figure(table, args.norm).savefig(paths["figure"], dpi=120)
    except OSError as exc:
        raise SinkError(f"cannot write the table into {out!r}: {exc.strerror or exc}") from None
    print(text, end="")
    print(f"wrote {', '.join(paths.values())}", file=sys.stderr)
    return 0


def _main(argv=None) -> int:
    from ..errors import RnnlabError
    try:
        return main_kappa_table(argv)
    except RnnlabError as exc:
        print(f"rnnlab kappa-table: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_main())


__all__ = ["DEFAULT_H", "DEFAULT_SEEDS", "DEFAULT_T", "FORMS", "KappaTable", "MEASURES",
           "NORMS", "add_kappa_table_arguments", "check_grid", "draw_params", "figure2_spec",
           "heatmap_figure", "kappa_table", "main_kappa_table", "markdown", "point_ratios",
           "write_csv"]
