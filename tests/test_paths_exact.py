"""Exact rational linear algebra (rnnlab.paths.exact): ranks, solutions, nullspaces, determinants,
inverses and the sparse RowSpace, against independent computations on small integer matrices."""
from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnlab.paths import exact

small_ints = st.integers(-3, 3)


@st.composite
def int_matrices(draw, max_rows=6, max_cols=6):
    m = draw(st.integers(1, max_rows))
    n = draw(st.integers(1, max_cols))
    return [[draw(small_ints) for _ in range(n)] for _ in range(m)]


def leibniz_det(A):
    """Determinant by the permutation expansion (independent of elimination)."""
    n = len(A)
    total = 0
    for perm in itertools.permutations(range(n)):
        inversions = sum(perm[i] > perm[j] for i in range(n) for j in range(i + 1, n))
        term = (-1) ** inversions
        for i, p in enumerate(perm):
            term *= A[i][p]
        total += term
    return total


def test_rank_of_known_matrices():
    assert exact.rank([[1, 0], [0, 1]]) == 2
    assert exact.rank([[1, 2], [2, 4]]) == 1
    assert exact.rank([[0, 0], [0, 0]]) == 0
    assert exact.rank([[Fraction(1, 3), 1], [1, 3]]) == 1
    assert exact.rank(np.eye(4, dtype=np.int64)) == 4
    # A float-rank trap: rows differing by 1e-20 relative are independent exactly.
    big = 10 ** 20
    assert exact.rank([[big, 1], [big + 1, 1]]) == 2


def test_floats_are_refused():
    with pytest.raises(TypeError, match="Fraction"):
        exact.rank([[0.5, 1.0]])


@given(int_matrices())
def test_rank_matches_rref_and_float_rank(A):
    r = exact.rank(A)
    R, pivots = exact.rref(A)
    assert r == len(R) == len(pivots)
    # entries in [-3, 3], at most 6 x 6: a nonzero r x r minor is an integer >= 1, so the
    # smallest nonzero singular value is >= 1 / ||A||^(r-1) >= 18^-5 ~ 5e-7, far above numpy's
    # rank threshold 6 eps ||A|| ~ 2e-14: the float rank is then exact
    assert r == np.linalg.matrix_rank(np.array(A, dtype=float))
    assert exact.rank([list(col) for col in zip(*A)]) == r   # row rank = column rank


@given(int_matrices(), st.lists(small_ints, min_size=6, max_size=6))
def test_solve_is_exact(A, x_true):
    n = len(A[0])
    x_true = x_true[:n]
    b = [sum(a * v for a, v in zip(row, x_true)) for row in A]
    sol = exact.solve(A, b)
    assert sol.consistent
    assert [sum(a * v for a, v in zip(row, sol.x)) for row in A] == b
    assert sol.nullity == n - exact.rank(A)
    assert sol.unique == (sol.nullity == 0)
    if sol.unique:
        assert list(sol.x) == x_true and sol.integral


def test_solve_reports_inconsistency_and_fractions():
    sol = exact.solve([[1, 1], [1, 1]], [0, 1])
    assert not sol.consistent and sol.x is None
    sol = exact.solve([[2]], [1])
    assert sol.consistent and sol.unique and not sol.integral and sol.x == (Fraction(1, 2),)


@given(int_matrices())
def test_nullspace(A):
    N = exact.nullspace(A)
    n = len(A[0])
    assert len(N) == n - exact.rank(A)
    for v in N:
        assert all(sum(a * b for a, b in zip(row, v)) == 0 for row in A)
    if N:
        assert exact.rank(N) == len(N)


@given(st.integers(1, 5).flatmap(lambda n: st.lists(st.lists(small_ints, min_size=n, max_size=n),
                                                     min_size=n, max_size=n)))
def test_det_and_inverse(A):
    d = exact.det(A)
    assert d == leibniz_det(A)
    n = len(A)
    if d == 0:
        assert exact.rank(A) < n
        with pytest.raises(ValueError, match="singular"):
            exact.inverse(A)
    else:
        inv = exact.inverse(A)
        assert exact.matmul(A, inv) == [[int(i == j) for j in range(n)] for i in range(n)]
        # an integer matrix has an integer inverse iff det = +-1
        assert exact.is_integral(v for row in inv for v in row) == (abs(d) == 1)


def test_det_with_fractions():
    assert exact.det([[Fraction(1, 2), 0], [0, Fraction(2, 3)]]) == Fraction(1, 3)


@given(int_matrices(max_rows=8), st.lists(small_ints, min_size=8, max_size=8))
def test_rowspace_express_and_contains(A, coeffs):
    space = exact.RowSpace(track=True)
    space.add_all(A)
    assert space.rank == exact.rank(A) and space.n_added == len(A)
    target = exact.combine(A, dict(enumerate(coeffs[:len(A)])), len(A[0]))
    assert space.contains(target)
    x = space.express(target)
    assert exact.combine(A, x, len(A[0])) == target
    # a vector outside the span is recognised (when the span is not everything)
    if space.rank < len(A[0]):
        N = exact.nullspace(A)      # N is orthogonal to the rows: its vectors leave the span
        outside = [int(v * np.lcm.reduce([Fraction(u).denominator for u in N[0]]))
                   for v in N[0]]
        assert not space.contains(outside)
        assert space.express(outside) is None


def test_rowspace_add_reports_independence():
    space = exact.RowSpace()
    assert space.add({0: 1, 2: 1})
    assert space.add([0, 1, 1])
    assert not space.add([0, 2, 2])
    assert not space.add({0: 1, 1: 1, 2: 2})
    assert space.rank == 2
    with pytest.raises(ValueError, match="track"):
        space.express([1, 0, 1])


def test_is_integral():
    assert exact.is_integral([1, Fraction(4, 2), -3])
    assert not exact.is_integral({0: Fraction(1, 2)})
