"""Exact rational linear algebra for the path-space theorems: no floating tolerance anywhere.

Matrices are sequences of rows (lists or tuples of ints / :class:`fractions.Fraction`, or 2-D
integer NumPy arrays); vectors are sequences. Every result is computed with Python ints and
Fractions, so a rank, a solution or a "this vector is (not) in the span" answer is a fact about
the matrix, not an estimate. Sizes here are those of tiny networks (at most a few hundred rows
and columns), where exact arithmetic costs milliseconds to a second.

The workhorse is :class:`RowSpace`, an incremental row echelon form on sparse rows (``dict``
column -> value), which can also remember how each stored row combines the rows that were added
(``track=True``), so it answers "express this vector as a combination of the added rows" exactly.
The dense helpers (:func:`rref`, :func:`solve`, :func:`nullspace`, :func:`det`, :func:`inverse`)
are plain Gauss-Jordan elimination for small systems.
"""
from __future__ import annotations

import dataclasses
import heapq
from fractions import Fraction

import numpy as np


# ----------------------------------------------------------------------------- conversions
def _scalar(a):
    """An exact Python number (int or Fraction) from an int, Fraction or NumPy integer."""
    if isinstance(a, (bool, np.bool_)):
        return int(a)
    if isinstance(a, (int, Fraction)):
        return a
    if isinstance(a, np.integer):
        return int(a)
    if isinstance(a, (float, np.floating)):
        raise TypeError(f"exact linear algebra takes ints or Fractions, not floats ({a!r}); "
                        "convert with fractions.Fraction(x) if the float is exact")
    raise TypeError(f"cannot use {type(a).__name__} {a!r} as an exact number")


def as_rows(A) -> list[list]:
    """``A`` as a list of rows of exact numbers (ints or Fractions)."""
    return [[_scalar(a) for a in row] for row in (A.tolist() if isinstance(A, np.ndarray)
                                                     else A)]


def sparse(row) -> dict:
    """A dense row (sequence) or a sparse row (dict column -> value) as a sparse dict without
    zeros."""
    if isinstance(row, dict):
        return {int(k): _scalar(v) for k, v in row.items() if v != 0}
    vals = row.tolist() if isinstance(row, np.ndarray) else row
    return {k: _scalar(v) for k, v in enumerate(vals) if v != 0}


def is_integral(values) -> bool:
    """True if every value (a sequence, or a dict's values) is an integer."""
    vals = values.values() if isinstance(values, dict) else values
    return all(Fraction(v).denominator == 1 for v in vals)


def combine(rows, coeffs: dict, ncols: int) -> list:
    """sum_i coeffs[i] * rows[i] as a dense list of exact numbers (``rows`` indexable by the keys
    of ``coeffs``; rows may be dense sequences/arrays or sparse dicts)."""
    out = [0] * ncols
    for i, c in coeffs.items():
        c = _scalar(c)
        if c == 0:
            continue
        for k, v in sparse(rows[i]).items():
            out[k] += c * v
    return out


# ----------------------------------------------------------------------------- sparse row space
class RowSpace:
    """The span of the rows added so far, kept as a sparse row echelon form over the rationals.

    Each stored row has a pivot column (its smallest column) with coefficient 1 and entries only at
    columns >= the pivot. :meth:`add` reduces a row against the stored ones and keeps the remainder
    if it is not zero; :meth:`contains` says whether a row lies in the span.

    Parameters
    ----------
    track : bool
        Also remember, for each stored row, its expression as a combination of the added rows
        (numbered 0, 1, ... in the order of :meth:`add` calls), so :meth:`express` can write a
        vector as such a combination.
    """

    def __init__(self, track: bool = False):
        self.track = track
        self._pivot_rows: dict[int, dict] = {}
        self._combos: dict[int, dict] = {}
        self._added = 0

    @property
    def rank(self) -> int:
        """The dimension of the span."""
        return len(self._pivot_rows)

    @property
    def n_added(self) -> int:
        """How many rows were passed to :meth:`add`."""
        return self._added

    def _reduce(self, row: dict, combo: dict | None):
        """Subtract stored rows until no entry of ``row`` sits at a pivot column (in place)."""
        pivots = self._pivot_rows
        heap = [c for c in row if c in pivots]
        heapq.heapify(heap)
        while heap:
            c = heapq.heappop(heap)
            a = row.get(c, 0)
            if a == 0:
                continue
            for k, v in pivots[c].items():
                if k not in row and k in pivots:
                    heapq.heappush(heap, k)
                nv = row.get(k, 0) - a * v
                if nv:
                    row[k] = nv
                else:
                    row.pop(k, None)
            if combo is not None:
                for i, v in self._combos[c].items():
                    nv = combo.get(i, 0) - a * v
                    if nv:
                        combo[i] = nv
                    else:
                        combo.pop(i, None)
        return row, combo

    def add(self, row) -> bool:
        """Add a row; return True if it was independent of the rows already added."""
        index = self._added
        self._added += 1
        combo = {index: 1} if self.track else None
        rest, combo = self._reduce(sparse(row), combo)
        if not rest:
            return False
        p = min(rest)
        lead = rest[p]
        if lead != 1:
            rest = _divide(rest, lead)
            if combo is not None:
                combo = _divide(combo, lead)
        self._pivot_rows[p] = rest
        if combo is not None:
            self._combos[p] = combo
        return True

    def add_all(self, rows) -> int:
        """Add every row; return the rank afterwards."""
        for row in rows:
            self.add(row)
        return self.rank

    def contains(self, row) -> bool:
        """True if ``row`` is in the span (exactly)."""
        rest, _ = self._reduce(sparse(row), None)
        return not rest

    def express(self, row) -> dict | None:
        """Coefficients ``x`` (dict: added-row number -> Fraction or int) with
        ``row = sum_i x[i] * added_i`` exactly, or None when ``row`` is not in the span.

        Needs ``track=True``. When the added rows are dependent the combination is one of many.
        """
        if not self.track:
            raise ValueError("express() needs RowSpace(track=True)")
        rest, combo = self._reduce(sparse(row), {})
        if rest:
            return None
        return {i: -v for i, v in combo.items()}


def _divide(row: dict, lead) -> dict:
    """``row / lead``, staying with Python ints when every entry is a multiple of ``lead``."""
    if isinstance(lead, int) and all(isinstance(v, int) and v % lead == 0 for v in row.values()):
        return {k: v // lead for k, v in row.items()}
    return {k: Fraction(v) / lead for k, v in row.items()}


def rank(A) -> int:
    """The exact rank of a matrix of ints or Fractions (rows as sequences, dicts or an array)."""
    rows = A.tolist() if isinstance(A, np.ndarray) else A
    return RowSpace().add_all(rows)


def in_row_span(A, b) -> bool:
    """True if vector ``b`` is an exact rational combination of the rows of ``A``."""
    space = RowSpace()
    space.add_all(A.tolist() if isinstance(A, np.ndarray) else A)
    return space.contains(b)


# ----------------------------------------------------------------------------- dense helpers
def rref(A):
    """Reduced row echelon form.

    Returns
    -------
    R : list of rows (Fractions)
        The reduced rows, zero rows dropped.
    pivots : list of int
        The pivot column of each row of R.
    """
    M = [[Fraction(a) for a in row] for row in as_rows(A)]
    ncols = len(M[0]) if M else 0
    pivots, r = [], 0
    for c in range(ncols):
        p = next((i for i in range(r, len(M)) if M[i][c] != 0), None)
        if p is None:
            continue
        M[r], M[p] = M[p], M[r]
        lead = M[r][c]
        M[r] = [v / lead for v in M[r]]
        for i in range(len(M)):
            if i != r and M[i][c] != 0:
                f = M[i][c]
                M[i] = [a - f * b for a, b in zip(M[i], M[r])]
        pivots.append(c)
        r += 1
        if r == len(M):
            break
    return M[:r], pivots


@dataclasses.dataclass(frozen=True)
class Solution:
    """The outcome of :func:`solve`.

    Attributes
    ----------
    x : tuple of Fraction or None
        A solution of A x = b (free variables set to 0), or None if there is none.
    consistent : bool
        Whether A x = b has a solution.
    unique : bool
        Whether the solution is unique (A has full column rank).
    integral : bool
        Whether ``x`` has only integer entries. When the solution is not unique this describes
        the particular solution returned, not whether some integer solution exists.
    nullity : int
        Dimension of the solution set (number of free variables).
    """

    x: tuple | None
    consistent: bool
    unique: bool
    integral: bool
    nullity: int


def solve(A, b) -> Solution:
    """Solve A x = b exactly (A: m x n, b: m) by Gauss-Jordan elimination on [A | b]."""
    rows = as_rows(A)
    b = [_scalar(v) for v in (b.tolist() if isinstance(b, np.ndarray) else b)]
    if len(rows) != len(b):
        raise ValueError(f"A has {len(rows)} rows but b has {len(b)} entries")
    n = len(rows[0]) if rows else 0
    R, pivots = rref([row + [bi] for row, bi in zip(rows, b)])
    if n in pivots:  # a pivot in the b column: 0 = 1
        return Solution(None, False, False, False, n - len(pivots) + 1)
    x = [Fraction(0)] * n
    for row, c in zip(R, pivots):
        x[c] = row[n]
    nullity = n - len(pivots)
    return Solution(tuple(x), True, nullity == 0, is_integral(x), nullity)


def nullspace(A) -> list[list]:
    """A basis (list of Fraction vectors) of {x : A x = 0}."""
    rows = as_rows(A)
    n = len(rows[0]) if rows else 0
    R, pivots = rref(rows) if rows else ([], [])
    free = [c for c in range(n) if c not in pivots]
    basis = []
    for f in free:
        v = [Fraction(0)] * n
        v[f] = Fraction(1)
        for row, c in zip(R, pivots):
            v[c] = -row[f]
        basis.append(v)
    return basis


def det(A):
    """The exact determinant of a square matrix (Bareiss fraction-free elimination on ints;
    Fractions are cleared by a common denominator first)."""
    rows = as_rows(A)
    n = len(rows)
    if any(len(r) != n for r in rows):
        raise ValueError("det needs a square matrix")
    if n == 0:
        return 1
    scale = 1
    M = []
    for r in rows:
        den = 1
        for v in r:
            den = den * Fraction(v).denominator // _gcd(den, Fraction(v).denominator)
        M.append([int(Fraction(v) * den) for v in r])
        scale *= den
    sign, prev = 1, 1
    for k in range(n - 1):
        if M[k][k] == 0:
            p = next((i for i in range(k + 1, n) if M[i][k] != 0), None)
            if p is None:
                return 0
            M[k], M[p] = M[p], M[k]
            sign = -sign
        for i in range(k + 1, n):
            for j in range(k + 1, n):
                M[i][j] = (M[i][j] * M[k][k] - M[i][k] * M[k][j]) // prev
        prev = M[k][k]
    return Fraction(sign * M[n - 1][n - 1], scale) if scale != 1 else sign * M[n - 1][n - 1]


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def inverse(A) -> list[list]:
    """The exact inverse (Fractions) of a square matrix; ValueError if it is singular."""
    rows = as_rows(A)
    n = len(rows)
    if any(len(r) != n for r in rows):
        raise ValueError("inverse needs a square matrix")
    aug = [row + [int(i == j) for j in range(n)] for i, row in enumerate(rows)]
    R, pivots = rref(aug)
    if pivots[:n] != list(range(n)) or len(R) < n:
        raise ValueError("matrix is singular")
    return [row[n:] for row in R]


def matmul(A, B) -> list[list]:
    """Exact matrix product of two row-lists."""
    A, B = as_rows(A), as_rows(B)
    cols = list(zip(*B))
    return [[sum(a * b for a, b in zip(row, col)) for col in cols] for row in A]
