"""The table of claims behind ``rnnlab verify``: the registry, the runner and the table.

A check is a function ``fn(ctx) -> Tally`` registered with :func:`register_check`; it loops over
the test networks of a :class:`CheckContext` and records, per instance, an error and whether it
is within a tolerance justified by float64 round-off (or an exact integer comparison).
:func:`run_checks` runs every registered check and returns :class:`CheckResult` rows;
:func:`format_table` prints them. The checks live in :mod:`rnnlab.paths.claims` (unrolled paths,
norms, rescaling) and :mod:`rnnlab.paths.reduction_checks` (reduction graph, basis paths), which
register themselves with the same decorator when :func:`load_checks` imports them; the command
line is :mod:`rnnlab.paths.verify_cli`.

A planted bug (``plant=``, a key of :data:`rnnlab.paths.plants.PLANTS`) perturbs one computation
inside the checks so that the table must report FAIL: a verification table that cannot fail
proves nothing.

Sources are cited as ``path-sgd`` (``path-sgd-relu-rnn.md``) and ``gsgd``
(``path-space-rnn-gsgd.md``); both papers have a Theorem 1, so claims and sources always name
the paper with the theorem ("Theorem 1 (gsgd)"). Rows marked "discrepancy" confirm, by code, an
exact relation showing a printed formula differs from the definition.
"""
from __future__ import annotations

import dataclasses
import importlib
import time
import traceback

import numpy as np

from ..params import unflatten
from .plants import PLANTS, check_plant
from .unrolled import fit_T, n_params

EPS = float(np.finfo(np.float64).eps)


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
    defining module's last name, e.g. ``"claims"`` or ``"reduction_checks"``). Registering a
    claim again in the same group replaces it."""
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
    return unflatten(scale * rng.standard_normal(n_params(spec)), spec, host=True)


# ----------------------------------------------------------------------------- running
def load_checks() -> None:
    """Import the modules that register checks (:mod:`.claims`, :mod:`.reduction_checks`).
    Importing twice registers nothing new."""
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
        Inject a known bug (a key of :data:`rnnlab.paths.plants.PLANTS`); the affected rows must
        FAIL.
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
    check_plant(plant)
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


__all__ = ["CHECKS", "EPS", "PLANTS", "Case", "Check", "CheckContext", "CheckResult", "Tally",
           "format_table", "load_checks", "make_params", "register_check", "run_checks"]
