"""The table of claims behind ``rnnlab verify``: each paper claim about paths, checked by code.

A check is a function ``fn(ctx) -> Tally`` registered with :func:`register_check`; it loops over
the test networks of a :class:`CheckContext` and records, per instance, an error and whether it
is within a tolerance justified by float64 round-off (or an exact integer comparison).
:func:`run_checks` runs every registered check and returns :class:`CheckResult` rows;
:func:`format_table` prints them. The checks live in :mod:`rnnlab.paths.claims` (unrolled paths,
norms, rescaling) and :mod:`rnnlab.paths.reduction_checks` (reduction graph, basis paths), which
register themselves with the same decorator when :func:`run_checks` imports them.

A planted bug (``plant=``, see :data:`PLANTS`) perturbs one computation inside the checks so that
the table must report FAIL: a verification table that cannot fail proves nothing.

Sources are cited as ``path-sgd`` (``path-sgd-relu-rnn.md``) and ``gsgd``
(``path-space-rnn-gsgd.md``). Rows marked "discrepancy" confirm, by code, an exact relation
showing a printed formula differs from the definition.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import time
import traceback

import numpy as np

from ..errors import ConfigError
from .unrolled import fit_T, n_params, unflatten_params

EPS = float(np.finfo(np.float64).eps)

PLANTS = {
    "kappa_factor": "the fast kappa is multiplied by 2 in the kappa checks",
    "kappa2_paper": "the printed Section 4.4 matrix form replaces the corrected kappa^(2)",
    "activation_mask": "the ReLU on/off mask is dropped from the path reconstruction",
    "rescale_transpose": "W_rec is rescaled by alpha_k/alpha_j instead of alpha_j/alpha_k",
}


# ----------------------------------------------------------------------------- registry
@dataclasses.dataclass(frozen=True)
class Check:
    """A registered check: the claim, where it comes from, and the function that tests it."""

    claim: str
    source: str
    fn: object
    group: str


CHECKS: list[Check] = []


def register_check(claim: str, source: str, group: str | None = None):
    """Decorator adding ``fn(ctx) -> Tally`` to :data:`CHECKS` (the group defaults to the
    defining module's last name, e.g. ``"verify"`` or ``"reduction_checks"``)."""
    def wrap(fn):
        g = group or fn.__module__.rsplit(".", 1)[-1]
        CHECKS[:] = [c for c in CHECKS if not (c.claim == claim and c.group == g)]
        CHECKS.append(Check(claim, source, fn, g))
        return fn
    return wrap


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """One row of the table.

    claim, source : str
    instances : int
        Networks (architecture x parameter draw) the claim was checked on.
    error : float or None
        The largest error seen (None: exact comparisons only).
    tolerance : float or None
        The bound each error had to meet (None for exact).
    passed : bool
    note : str
    """

    claim: str
    source: str
    instances: int
    error: float | None
    tolerance: float | None
    passed: bool
    note: str = ""
    seconds: float = 0.0

    @property
    def error_text(self) -> str:
        return "exact" if self.error is None else f"{self.error:.2e}"


class Tally:
    """Accumulates per-instance outcomes of one check."""

    def __init__(self, tolerance: float | None = None, note: str = ""):
        self.tolerance = tolerance
        self.instances = 0
        self.error = None
        self.passed = True
        self.note = note
        self.reduced = 0          # instances whose T was lowered to fit the enumeration limit

    def add(self, error: float, tolerance: float | None = None, *, count: bool = True) -> None:
        """One instance with a numerical error that must be <= tolerance (``count=False``: a
        further comparison on an instance already counted)."""
        tol = self.tolerance if tolerance is None else tolerance
        error = float(error)
        self.instances += int(count)
        self.tolerance = tol if self.tolerance is None else max(self.tolerance, tol)
        self.error = error if self.error is None else max(self.error, error)
        if not (error <= tol):   # NaN fails
            self.passed = False

    def exact(self, ok: bool, *, count: bool = True) -> None:
        """One instance of an exact (integer or structural) comparison."""
        self.instances += int(count)
        if not ok:
            self.passed = False

    def require(self, ok: bool, error: float | None = None, *, count: bool = True) -> None:
        """One instance of a qualitative claim (e.g. "differs"); ``error`` is shown if given."""
        self.instances += int(count)
        if error is not None:
            self.error = float(error) if self.error is None else max(self.error, float(error))
        if not ok:
            self.passed = False


# ----------------------------------------------------------------------------- instances
@dataclasses.dataclass(frozen=True)
class Case:
    spec: object
    params: dict
    T: int
    seed: int
    T_asked: int = 0

    @property
    def rng(self):
        return np.random.default_rng(self.seed + 7919)


@dataclasses.dataclass
class CheckContext:
    """What every check iterates over: architectures x seeds x instances."""

    layers: tuple = (1, 2)
    widths: tuple = (2, 3)
    T: int = 3
    seeds: tuple = (0,)
    instances: int = 2
    plant: str | None = None
    scale: float = 0.7
    max_paths: int = 1_000_000

    def specs(self, activation: str = "relu"):
        from ..models import ElmanSpec
        for L in self.layers:
            for w in self.widths:
                for bias in (False, True):
                    for outputs in ("every", "last"):
                        yield ElmanSpec(2, (w,) * L, 2, activation, bias, outputs)

    def cases(self, activation: str = "relu", T: int | None = None, *,
              enumerate_up_to: int | None = None, tally: "Tally | None" = None):
        """Networks to check. With ``enumerate_up_to`` (a path count, capped by
        ``max_paths``), T is lowered per architecture until the unrolled graph has at most that
        many paths (never below 1), and ``tally.reduced`` counts the instances affected: claims
        checked by enumeration still run on every architecture, on a shorter unroll."""
        T = self.T if T is None else T
        for n, spec in enumerate(self.specs(activation)):
            T_case = T
            if enumerate_up_to is not None:
                T_case = fit_T(spec, T, min(enumerate_up_to, self.max_paths))
            for seed in self.seeds:
                for k in range(self.instances):
                    s = int(np.random.SeedSequence([seed, n, k, T]).generate_state(1)[0])
                    if tally is not None and T_case < T:
                        tally.reduced += 1
                    yield Case(spec, make_params(spec, s, self.scale), T_case, s, T)


def make_params(spec, seed: int, scale: float = 0.7) -> dict:
    """float64 host parameters N(0, scale^2) (biases too) for ``spec``."""
    rng = np.random.default_rng(seed)
    return unflatten_params(spec, scale * rng.standard_normal(n_params(spec)))


# ----------------------------------------------------------------------------- running
def load_checks() -> None:
    """Import the modules that register checks (:mod:`.claims`, :mod:`.reduction_checks`; the
    latter also adds its planted bugs to :data:`PLANTS`). Importing twice registers nothing new."""
    importlib.import_module("rnnlab.paths.claims")
    importlib.import_module("rnnlab.paths.reduction_checks")


def run_checks(layers=(1, 2), widths=(2, 3), T: int = 3, seeds=(0,), instances: int = 2,
               include_reduction: bool = True, plant: str | None = None,
               only: str | None = None, progress=None, seed: int | None = None,
               max_paths: int = 1_000_000) -> list[CheckResult]:
    """Run every registered check and return one :class:`CheckResult` per check.

    Parameters
    ----------
    layers, widths : sequences of int
        Architectures: every combination, equal widths in all layers, with and without bias,
        outputs at every step and at the last step; n_in = n_out = 2.
    T : int
        Unroll length (some checks also use max(T, 3) or max(T, 4)).
    seeds : sequence of int
    seed : int, optional
        Shorthand for ``seeds=(seed,)``.
    instances : int
        Parameter draws per architecture and seed.
    include_reduction : bool
        Also run the checks registered by ``rnnlab.paths.reduction_checks`` when that module
        exists.
    plant : str or None
        Inject a known bug (a key of :data:`PLANTS`); the affected rows must FAIL.
    only : str or None
        Run only checks whose claim contains this text.
    progress : callable or None
        Called with each finished result (for a CLI that prints as it goes).
    max_paths : int
        Enumeration limit: claims checked by enumerating paths run with T lowered per
        architecture until the graph has at most this many paths (the note says how often);
        the dynamic-programming claims always use the full T.

    The checks run on the host in float64 with the NumPy backend active, whatever backend the
    caller uses (they are statements about the mathematics, not about a device).
    """
    from .. import backend, validate
    if seed is not None:
        seeds = (seed,)
    load_checks()
    if plant is not None and plant not in PLANTS:
        raise ConfigError(f"plant must be one of {', '.join(PLANTS)}; got {plant!r}")
    layers = tuple(validate.positive_int("layers", L) for L in layers)
    widths = tuple(validate.positive_int("widths", w) for w in widths)
    seeds = tuple(int(s) for s in seeds)
    ctx = CheckContext(layers=layers, widths=widths, T=validate.positive_int("T", T),
                       seeds=seeds, instances=validate.positive_int("instances", instances),
                       plant=plant, max_paths=validate.positive_int("max_paths", max_paths))
    with backend.use_backend("numpy"):
        return _run(ctx, include_reduction, only, progress)


def _run(ctx, include_reduction, only, progress) -> list[CheckResult]:
    results = []
    for check in list(CHECKS):
        if check.group == "reduction_checks" and not include_reduction:
            continue
        if only is not None and only.lower() not in check.claim.lower():
            continue
        start = time.perf_counter()
        try:
            tally = check.fn(ctx)
            notes = [tally.note] if tally.note else []
            if not tally.instances:
                notes.append("no instances ran")
            if tally.reduced:
                notes.append(f"T lowered on {tally.reduced} instances to keep enumeration "
                             f"within its path limit")
            res = CheckResult(check.claim, check.source, tally.instances, tally.error,
                              tally.tolerance if tally.error is not None else None,
                              bool(tally.passed and tally.instances > 0), "; ".join(notes))
        except Exception as exc:  # a crashing check is a failing row, not a crashed table
            res = CheckResult(check.claim, check.source, 0, None, None, False,
                              f"raised {type(exc).__name__}: {exc}; "
                              + traceback.format_exc(limit=2).strip().splitlines()[-1])
        results.append(dataclasses.replace(res, seconds=time.perf_counter() - start))
        if progress is not None:
            progress(results[-1])
    return results


def format_table(results) -> str:
    """A plain-text table: claim | source | instances | largest error | result, with notes."""
    rows = [("#", "claim", "source", "inst.", "largest err", "tolerance", "result")]
    for n, r in enumerate(results, start=1):
        tol = "-" if r.tolerance is None else f"{r.tolerance:.1e}"
        rows.append((str(n), r.claim, r.source, str(r.instances), r.error_text, tol,
                     "PASS" if r.passed else "FAIL"))
    claim_w = 72
    widths = [max(len(row[0]) for row in rows), claim_w,
              min(max(len(row[2]) for row in rows), 40)] + \
             [max(len(row[k]) for row in rows) for k in (3, 4, 5, 6)]
    lines = []

    def wrap(text, width):
        out, line = [], ""
        for word in text.split():
            if line and len(line) + 1 + len(word) > width:
                out.append(line)
                line = word
            else:
                line = f"{line} {word}".strip()
        out.append(line)
        return out

    for k, row in enumerate(rows):
        cells = [wrap(c, w) if i in (1, 2) else [c] for i, (c, w) in enumerate(zip(row, widths))]
        if k > 0 and results[k - 1].note:
            cells[1] = cells[1] + wrap("note: " + results[k - 1].note, claim_w)
        height = max(len(c) for c in cells)
        for h in range(height):
            parts = [(c[h] if h < len(c) else "").ljust(w) for c, w in zip(cells, widths)]
            lines.append(" | ".join(parts).rstrip())
        if k == 0:
            lines.append("-+-".join("-" * w for w in widths))
    n_fail = sum(not r.passed for r in results)
    lines.append("")
    total = sum(r.seconds for r in results)
    lines.append(f"{len(results)} claims checked, {len(results) - n_fail} passed, "
                 f"{n_fail} failed ({total:.1f} s)")
    return "\n".join(lines)


def _int_list(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers; got {text!r}")


def add_verify_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``verify`` options to an argparse parser (for the CLI)."""
    load_checks()   # so --plant lists every planted bug
    parser.add_argument("--layers", type=_int_list, default=(1, 2),
                        help="comma-separated layer counts (default 1,2)")
    parser.add_argument("--widths", type=_int_list, default=(2, 3),
                        help="comma-separated hidden widths (default 2,3)")
    parser.add_argument("--T", "-T", type=int, default=3, help="unroll length (default 3)")
    parser.add_argument("--seeds", type=_int_list, default=(0,),
                        help="comma-separated seeds (default 0)")
    parser.add_argument("--instances", type=int, default=2,
                        help="parameter draws per architecture and seed (default 2)")
    parser.add_argument("--plant", choices=sorted(PLANTS), default=None,
                        help="inject a known bug; the table must then report FAIL")
    parser.add_argument("--only", default=None, help="run only claims containing this text")
    parser.add_argument("--max-paths", type=int, default=1_000_000,
                        help="enumeration limit; enumeration claims lower T to fit it")
    parser.add_argument("--no-reduction", action="store_true",
                        help="skip the reduction-graph checks")
    return parser


def main_verify(args=None) -> int:
    """Run the checks and print the table; 0 if every claim passed, 1 otherwise.

    ``args`` is an argparse Namespace built with :func:`add_verify_arguments`, or a list of
    command-line strings (None: ``sys.argv[1:]``).
    """
    if args is None or isinstance(args, (list, tuple)):
        parser = add_verify_arguments(argparse.ArgumentParser(
            prog="rnnlab verify", description="check the path-geometry claims numerically"))
        args = parser.parse_args(args)
    from tqdm.auto import tqdm
    load_checks()
    # a bar on a terminal only (larger settings take minutes); one tick per finished claim
    with tqdm(total=len(CHECKS), desc="claims", unit="claim", disable=None, leave=False) as bar:
        results = run_checks(layers=args.layers, widths=args.widths, T=args.T,
                             seeds=args.seeds, instances=args.instances,
                             include_reduction=not getattr(args, "no_reduction", False),
                             plant=getattr(args, "plant", None),
                             only=getattr(args, "only", None),
                             max_paths=getattr(args, "max_paths", 1_000_000),
                             progress=lambda result: bar.update(1))
    print(format_table(results))
    return 0 if results and all(r.passed for r in results) else 1


__all__ = ["CHECKS", "Check", "CheckContext", "CheckResult", "PLANTS", "Tally",
           "add_verify_arguments", "format_table", "load_checks", "main_verify", "make_params",
           "register_check", "run_checks"]
