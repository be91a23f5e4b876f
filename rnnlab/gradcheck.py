"""Finite-difference gradient checking in float64.

``check_gradients(loss_fn, params, grads)`` compares hand-written gradients with central
differences, element by element::

    numeric_k = (L(p + eps e_k) - L(p - eps e_k)) / (2 eps)
    error_k   = |analytic_k - numeric_k| / max(|analytic_k|, |numeric_k|, floor * scale)

where ``scale`` is the largest |analytic| or |numeric| gradient element over all parameters
(the numeric values keep a backward that returns too-small gradients from shrinking the scale).
The floor keeps elements that are tiny compared with the rest of the gradient from being judged
by round-off alone.

ReLU kinks: if a perturbation moves a pre-activation across 0, the central difference is not the
derivative. With one kink inside [-eps, eps] whose slope jump is J, the second difference
d2 = L(p+) - 2 L(p) + L(p-) is J (eps - distance), and the central difference is off by exactly
|d2| / (2 eps). So an element is a kink candidate when that possible error exceeds
``kink_tol`` times the element's own denominator (and d2 stands clear of round-off); a
candidate is re-measured with steps of eps/2 and counted as a kink if its second difference
does not shrink 4-fold, or its central difference moves by more than the same bound, where a
smooth function's must shrink 4-fold and agree to O(eps^2) (so strong curvature is still
judged). Kinks are counted and reported, not judged. A wrong gradient does not make the loss
kinked, so this cannot hide a bug; an undetected kink can move an element's error by at most
``kink_tol``, or by round-off-sized amounts (d2 below 1e3 ulps of L).

``check_directional`` does the same along random directions, for models too large to check
element by element.

Non-finite values fail, never pass: an element whose analytic gradient, or whose loss at the
point or at a perturbed point, is NaN or inf gets error inf (and a note in the report naming the
parameter and elements); ``check_directional`` returns inf. Bad arguments (keys, shapes, dtypes
other than float64, eps <= 0) raise :class:`rnnlab.errors.ConfigError`.
"""
from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from . import backend, validate
from .errors import ConfigError

_ULP = float(np.finfo(np.float64).eps)


@dataclasses.dataclass
class GradCheckReport:
    """Per-parameter results of a gradient check.

    Attributes
    ----------
    errors : dict name -> float
        Largest relative error over the checked (non-kink) elements.
    checked : dict name -> int
        Number of elements compared.
    kinks : dict name -> int
        Number of elements skipped because a perturbation crossed a ReLU kink.
    notes : dict name -> str
        Why a parameter's error is inf: which elements had a non-finite analytic gradient or
        loss value (parameters without such elements have no entry).
    """

    errors: dict
    checked: dict
    kinks: dict
    notes: dict = dataclasses.field(default_factory=dict)

    @property
    def max_error(self) -> float:
        # np.max propagates NaN (the builtin max drops it depending on order)
        return float(np.max(list(self.errors.values()))) if self.errors else 0.0

    def passed(self, tol: float = 1e-6) -> bool:
        return bool(self.max_error < tol)  # False for NaN

    def __str__(self):
        rows = [f"{'parameter':<16} {'checked':>8} {'kinks':>6} {'max rel error':>14}"]
        for name in self.errors:
            rows.append(f"{name:<16} {self.checked[name]:>8} {self.kinks[name]:>6} "
                        f"{self.errors[name]:>14.3e}")
        rows.extend(f"{name}: {note}" for name, note in self.notes.items())
        return "\n".join(rows)


def _require_float64(params, grads):
    """Same keys in the same order, float64 arrays of matching shapes (ConfigError otherwise)."""
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"params must be a non-empty dict name -> float64 array; got {params!r}")
    if not isinstance(grads, dict) or list(grads) != list(params):
        got = list(grads) if isinstance(grads, dict) else type(grads).__name__
        raise ConfigError(f"grads must have the keys of params {list(params)}; got {got}")
    for name, p in params.items():
        if getattr(p, "dtype", None) != np.float64:
            raise ConfigError(f"gradient checks need float64 parameters; {name} is "
                              f"{getattr(p, 'dtype', type(p).__name__)} "
                              "(central differences in float32 cannot resolve 1e-6 errors)")
    for name, g in grads.items():
        if getattr(g, "dtype", None) != np.float64:
            raise ConfigError(f"gradient checks need float64 gradients; grads[{name!r}] is "
                              f"{getattr(g, 'dtype', type(g).__name__)} "
                              "(float32 round-off, ~1e-7 per operation, can hide or fake 1e-6 "
                              "errors)")
        if tuple(g.shape) != tuple(params[name].shape):
            raise ConfigError(f"grads[{name!r}] must have the shape of params[{name!r}], "
                              f"{tuple(params[name].shape)}; got {tuple(g.shape)}")


def _nonnegative(name, value):
    """``value`` as a float >= 0, inf allowed (``kink_tol=inf`` judges every element)."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value)
            or value < 0):
        raise ConfigError(f"{name} must be a number >= 0 (inf allowed); got {value!r}")
    return float(value)


def _check_names(names, params):
    """The parameter names to check, as a list (all of params for None)."""
    if names is None:
        return list(params)
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in params]
    if unknown or not names:
        raise ConfigError(f"names must be a non-empty list of keys of params {list(params)}; "
                          f"got {names!r}")
    return list(dict.fromkeys(names))


def _loss(loss_fn, params) -> float:
    """``loss_fn(params)`` as a Python float (NaN and inf pass through, to be judged)."""
    value = loss_fn(params)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"loss_fn must return a real scalar; got {type(value).__name__}")


def _finite(*values) -> bool:
    return all(math.isfinite(v) for v in values)


def _where_finite(a):
    """A copy of ``a`` with its NaN and inf entries replaced by 0 (no warnings)."""
    return np.where(np.isfinite(a), a, 0.0)


def _examples(indices, limit=3) -> str:
    shown = ", ".join(str(i) for i in indices[:limit])
    return shown + (", ..." if len(indices) > limit else "")


def _with(params, name, array):
    """A shallow copy of ``params`` with one entry replaced (the original is never mutated)."""
    out = dict(params)
    out[name] = array
    return out


def check_gradients(loss_fn, params: dict, grads: dict, eps: float = 1e-5,
                    floor: float = 1e-3, kink_tol: float = 1e-8,
                    names=None) -> GradCheckReport:
    """Compare ``grads`` with central differences of ``loss_fn`` at ``params``.

    Parameters
    ----------
    loss_fn : callable params -> float
        Must not modify its argument.
    params, grads : dict name -> float64 array
    eps : float
        Perturbation size (1e-5 balances truncation, ~eps^2, against round-off, ~1e-16/eps).
    floor : float
        Denominator floor, relative to the largest |analytic| or |numeric| gradient element.
    kink_tol : float
        An element is a kink candidate if |L+ - 2 L0 + L-| / (2 eps), the error a kink would
        cause, exceeds kink_tol times its denominator, and a kink if that second difference
        also fails to shrink 4-fold at step eps/2.
    names : iterable of str, optional
        Only check these parameters.
    """
    _require_float64(params, grads)
    names = _check_names(names, params)
    eps = validate.positive_float("eps", eps)
    floor = validate.positive_float("floor", floor)
    kink_tol = _nonnegative("kink_tol", kink_tol)
    host_grads = {k: backend.to_host(g) for k, g in grads.items()}
    f0 = _loss(loss_fn, params)

    def loss_at(name, host, index, step):
        moved = host.copy()
        moved[index] += step
        return _loss(loss_fn, _with(params, name, backend.to_device(moved)))

    # pass 1: central differences of every element
    hosts, plus, minus = {}, {}, {}
    for name in names:
        host = hosts[name] = backend.to_host(params[name]).astype(np.float64)
        plus[name], minus[name] = np.empty(host.shape), np.empty(host.shape)
        for index in np.ndindex(host.shape):
            plus[name][index] = loss_at(name, host, index, eps)
            minus[name][index] = loss_at(name, host, index, -eps)
    # the scale is taken over finite values only; non-finite elements fail on their own below
    scale = max((float(np.abs(_where_finite(g)).max()) for g in host_grads.values() if g.size),
                default=0.0)
    for name in names:
        if plus[name].size:
            with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: judged below
                diff = _where_finite(plus[name] - minus[name])
            scale = max(scale, float(np.abs(diff).max()) / (2 * eps))
    scale = scale if scale > 0 else 1.0

    # pass 2: kinks and errors
    errors, checked, kinks, notes = {}, {}, {}, {}
    for name in names:
        worst, n_checked, n_kinks = 0.0, 0, 0
        bad_grad, bad_loss = [], []
        for index in np.ndindex(hosts[name].shape):
            f_plus, f_minus = float(plus[name][index]), float(minus[name][index])
            analytic = float(host_grads[name][index])
            numeric = (f_plus - f_minus) / (2 * eps)
            if not _finite(analytic, f0, f_plus, f_minus, numeric):
                (bad_grad if not math.isfinite(analytic) else bad_loss).append(index)
                worst, n_checked = math.inf, n_checked + 1
                continue
            denominator = max(abs(analytic), abs(numeric), floor * scale)
            d2 = f_plus - 2 * f0 + f_minus
            ulp = _ULP * max(abs(f0), abs(f_plus), abs(f_minus))  # round-off of one loss value
            # d2 carries a few ulps of round-off; above 1e3 ulps the 4-fold test is reliable
            if abs(d2) / (2 * eps) > kink_tol * denominator and abs(d2) > 1e3 * ulp:
                f_plus_half = loss_at(name, hosts[name], index, eps / 2)
                f_minus_half = loss_at(name, hosts[name], index, -eps / 2)
                if not _finite(f_plus_half, f_minus_half):
                    bad_loss.append(index)
                    worst, n_checked = math.inf, n_checked + 1
                    continue
                d2_half = f_plus_half - 2 * f0 + f_minus_half
                numeric_half = (f_plus_half - f_minus_half) / eps
                # smooth: d2_half = d2 / 4, and the two central differences agree to
                # O(eps^2) up to round-off (~ulp * L / eps); a kink breaks one or both. Near
                # an inflection (f'' ~ 0) a smooth d2 is its eps^4 term and scales by 16, not
                # 4; a kink's d2 scales by about 2 (or not at all), never by 16.
                quartic = abs(16 * d2_half - d2) <= 0.2 * abs(d2)
                bent = abs(4 * d2_half - d2) > 0.2 * abs(d2) and not quartic
                jump = abs(numeric - numeric_half) > max(kink_tol * denominator,
                                                         30 * ulp / eps)
                if jump and not bent:
                    # a large third derivative also separates the two central differences
                    # (by f3 eps^2 / 8); smooth, that gap shrinks 4-fold again at eps / 4,
                    # while across a kink it does not
                    f_plus_q = loss_at(name, hosts[name], index, eps / 4)
                    f_minus_q = loss_at(name, hosts[name], index, -eps / 4)
                    if _finite(f_plus_q, f_minus_q):
                        numeric_q = (f_plus_q - f_minus_q) / (eps / 2)
                        gap, gap_half = numeric - numeric_half, numeric_half - numeric_q
                        # round-off: numeric_half and numeric_q carry up to ~2 and ~4 ulp/eps
                        jump = abs(gap - 4 * gap_half) > 0.25 * abs(gap) + 24 * ulp / eps
                if bent or jump:
                    n_kinks += 1
                    continue
            worst = max(worst, abs(analytic - numeric) / denominator)
            n_checked += 1
        parts = []
        if not math.isfinite(f0):  # even a parameter with no elements cannot pass
            worst = math.inf
            parts.append(f"loss_fn(params) is {f0}: every element fails")
        elif bad_loss:
            parts.append(f"non-finite loss or central difference when moving {len(bad_loss)} "
                         f"elements ({_examples(bad_loss)})")
        if bad_grad:
            parts.insert(0, f"non-finite analytic gradient at {len(bad_grad)} elements "
                            f"({_examples(bad_grad)})")
        if parts:
            notes[name] = "; ".join(parts)
        errors[name], checked[name], kinks[name] = worst, n_checked, n_kinks
    return GradCheckReport(errors, checked, kinks, notes)


def check_directional(loss_fn, params: dict, grads: dict, directions: int = 5, seed: int = 0,
                      eps: float = 1e-5) -> float:
    """Largest relative error of <grads, v> against central differences along random unit
    directions ``v`` (all parameters moved at once). Returns that error: inf when a gradient
    element or a loss value is NaN or inf (such a check fails, it cannot pass)."""
    _require_float64(params, grads)
    directions = validate.positive_int("directions", directions)
    eps = validate.positive_float("eps", eps)
    host_grads = {k: backend.to_host(g) for k, g in grads.items()}
    if not all(bool(np.isfinite(g).all()) for g in host_grads.values()):
        return math.inf
    rng = np.random.default_rng(seed)
    host = {k: backend.to_host(p) for k, p in params.items()}
    worst = 0.0
    for _ in range(directions):
        v = {k: rng.standard_normal(p.shape) for k, p in host.items()}
        norm = np.sqrt(sum(float((a * a).sum()) for a in v.values()))
        v = {k: a / norm for k, a in v.items()}
        analytic = sum(float((host_grads[k] * v[k]).sum()) for k in host)
        f_plus = _loss(loss_fn, {k: backend.to_device(host[k] + eps * v[k]) for k in host})
        f_minus = _loss(loss_fn, {k: backend.to_device(host[k] - eps * v[k]) for k in host})
        numeric = (f_plus - f_minus) / (2 * eps)
        if not _finite(analytic, f_plus, f_minus, numeric):
            return math.inf
        worst = max(worst, abs(analytic - numeric) / max(abs(analytic), abs(numeric), 1e-12))
    return worst
