"""Weight initialisations for stacked Elman RNNs.

Every scheme names how the recurrent matrices ``W_rec`` are drawn; input and output matrices are
Glorot-uniform, except under ``"identity"`` and ``"uniform"`` where they are U(-scale, scale)
(``path-sgd-relu-rnn.md`` Section 5.2 initialises its IRNN baseline's other weights from
U[-0.01, 0.01]; with Glorot-sized input weights an identity recurrence sums inputs over T steps
and starts with huge states). Biases start at zero. ``gain`` multiplies every recurrent matrix
(the "recurrent gain").

Draws happen on the host with NumPy's generator, in float64, then are cast and moved to the
active backend, so a seed gives the same initial weights on NumPy and CuPy.

identity    W_rec = gain * I                                   (IRNN, Le, Jaitly & Hinton 2015)
orthogonal  W_rec = gain * Q, Q from QR of N(0,1) with signs fixed so Q is Haar (Saxe et al. 2014)
np-rnn      A ~ N(0,1)^{HxH}, R = A^T A / H, W_rec = gain * (R + I) / lambda_max(R + I)
            (Talathi & Vartak 2015: symmetric positive definite, largest eigenvalue = gain)
uniform     every weight U(-scale, scale), W_rec additionally times gain
glorot      W_rec = gain * U(-sqrt(6 / 2H), sqrt(6 / 2H))
sparse      every matrix, input and output included: each row (unit) keeps min(15, fan_in)
            nonzero incoming weights N(0, 1) / sqrt(15) at random columns, the rest 0; W_rec
            times gain (Martens 2010's sparse initialisation, with the scale of Martens &
            Sutskever 2011's code; that code also multiplies the input weights by 0.25, which
            rnnlab does not apply)
"""
from __future__ import annotations

import numpy as np

INITS = ("identity", "orthogonal", "np-rnn", "uniform", "glorot", "sparse")
SPARSE_FAN_IN = 15


def glorot_uniform(rng: np.random.Generator, fan_out: int, fan_in: int) -> np.ndarray:
    """(fan_out, fan_in) weights U(-a, a) with a = sqrt(6 / (fan_in + fan_out))."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_out, fan_in))


def orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    """A Haar-distributed (n, n) orthogonal matrix (QR of a Gaussian, signs of diag(R) fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def sparse(rng: np.random.Generator, fan_out: int, fan_in: int) -> np.ndarray:
    """(fan_out, fan_in) weights with min(15, fan_in) nonzero N(0, 1/15) entries per row."""
    w = np.zeros((fan_out, fan_in))
    keep = min(SPARSE_FAN_IN, fan_in)
    for row in w:
        columns = rng.choice(fan_in, size=keep, replace=False)
        row[columns] = rng.standard_normal(keep) / np.sqrt(SPARSE_FAN_IN)
    return w


def np_rnn(rng: np.random.Generator, n: int) -> np.ndarray:
    """The normalized-positive-definite (n, n) matrix of np-RNN, largest eigenvalue exactly 1."""
    a = rng.standard_normal((n, n))
    m = a.T @ a / n + np.eye(n)
    return m / np.linalg.eigvalsh(m)[-1]


def recurrent_matrix(init: str, rng: np.random.Generator, n: int, gain: float, scale: float):
    """A float64 (n, n) recurrent matrix drawn by scheme ``init``, times ``gain``."""
    if init == "identity":
        w = np.eye(n)
    elif init == "orthogonal":
        w = orthogonal(rng, n)
    elif init == "np-rnn":
        w = np_rnn(rng, n)
    elif init == "uniform":
        w = rng.uniform(-scale, scale, size=(n, n))
    elif init == "glorot":
        w = glorot_uniform(rng, n, n)
    elif init == "sparse":
        w = sparse(rng, n, n)
    else:
        raise ValueError(f"init must be one of {', '.join(INITS)}; got {init!r}")
    return gain * w


def feedforward_matrix(init: str, rng: np.random.Generator, fan_out: int, fan_in: int,
                       scale: float) -> np.ndarray:
    """A float64 (fan_out, fan_in) input or output matrix for scheme ``init``."""
    if init in ("identity", "uniform"):
        return rng.uniform(-scale, scale, size=(fan_out, fan_in))
    if init == "sparse":
        return sparse(rng, fan_out, fan_in)
    return glorot_uniform(rng, fan_out, fan_in)
