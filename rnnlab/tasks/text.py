"""Character-level Penn Treebank ("PTB-c"; ``../shared/notes/tasks.md`` section 7).

Data: ``ptb/ptb.char.{train,valid,test}.txt`` (see :mod:`rnnlab.datasets.text`); the vocabulary
is the training file's symbols (50: ``_`` marks the space between words, the end of a sentence
is a newline symbol, rare words are the spelled-out ``<unk>``), sorted; validation and test
symbols outside it are an error (PTB has none). Input one-hot(V), softmax(V) next-symbol
prediction at every step, cross-entropy; the metric is bits per character (``bpc``: mean
nats / ln 2 over every predicted symbol, newlines included), also reported: ``accuracy``.

Training is a stream (``carries_state = True``): the training symbols are cut into B contiguous
columns and batch k holds steps ``[k T, (k + 1) T)`` of every column, so each batch continues
the previous one (whose final state the trainer carries over); after the last whole window the
streams start again from the beginning. Which window a batch is follows from the training step
(``batch(rng, B, step)``: window ``step mod windows``, ``rng`` unused), so a resumed run reads
the window it stopped at, with the carried state from its checkpoint.

Evaluation (``eval_batches(n, seed, batch_size, split)``) covers the whole split: its symbols
are cut into ``S = min(n, batch_size)`` contiguous streams, read in windows of T steps (one
``(T, S, V)`` chunk in memory at a time; the trainer carries state from chunk to chunk), and a
mask drops the padding of the last window, so every symbol after the first is predicted
exactly once. Length ``T`` defaults to 50 (Krueger & Memisevic, [PathSGD]).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend, validate
from ..datasets.files import data_folder, find_file, verify_file
from ..datasets.text import Vocabulary, read_char_symbols
from ..errors import ConfigError
from ..losses import bits_per_character, softmax_cross_entropy
from ..options import Option
from .base import SPLITS, Task
from .mnist import FOLDER_OPTION, VERIFY_OPTION

FILES = {"train": "ptb.char.train.txt", "validation": "ptb.char.valid.txt",
         "test": "ptb.char.test.txt"}


class PTBChar(Task):
    """Character-level PTB language modelling; see the module docstring.

    ``batch(rng, B)`` returns ``x : (T, B, V)`` one-hot in the task's dtype, ``targets :
    (T, B)`` int64 next-symbol ids and ``mask = None``; evaluation chunks add a ``(T, S)`` mask.
    """

    name = "ptb-char"
    loss = "cross_entropy"
    outputs = "every"
    metric_name = "bpc"
    threshold = None
    better = "lower"
    carries_state = True
    options = (FOLDER_OPTION,
               Option.integer("T", 50, "steps per training window (truncated BPTT length)",
                              minimum=1),
               VERIFY_OPTION)

    def __init__(self, folder=None, T: int = 50, verify: bool = True, dtype=None):
        self.T = validate.positive_int("T", T)
        self.dtype = backend.resolve_dtype(dtype)
        self.folder = data_folder(folder)
        verify = None if verify else False
        symbols = {}
        for split, name in FILES.items():
            path, key = find_file(self.folder, "ptb", name)
            verify_file(path, key, verify)
            symbols[split] = (read_char_symbols(path), path)
        self.vocabulary = Vocabulary(symbols["train"][0])
        self.ids = {split: self.vocabulary.encode(s, where=path)
                    for split, (s, path) in symbols.items()}
        for split, ids in self.ids.items():
            if len(ids) < 2:
                raise ConfigError(f"{symbols[split][1]} holds {len(ids)} symbols; a stream "
                                  "needs at least 2")
        self.n_in = self.n_out = len(self.vocabulary)

    def __repr__(self):
        return f"PTBChar(T={self.T}, V={self.n_in})"

    def _one_hot(self, ids):
        table = np.eye(self.n_in, dtype=self.dtype)
        return table[ids]

    def windows(self, batch_size: int) -> int:
        """How many whole windows of T steps ``batch_size`` training streams hold (one pass)."""
        B = validate.positive_int("batch_size", batch_size)
        ids = self.ids["train"]
        length = (len(ids) - 1) // B
        if length < self.T:
            raise ConfigError(f"the training text ({len(ids)} symbols) is too short for "
                              f"{B} streams of at least T={self.T} steps")
        return length // self.T

    def batch(self, rng, batch_size: int, step: int = 0):
        """Window ``step mod windows`` of T steps of ``batch_size`` contiguous training
        streams (``rng`` is unused: the text is read in order)."""
        windows = self.windows(batch_size)
        step = validate.positive_int("step", step, minimum=0)
        ids = self.ids["train"]
        length = (len(ids) - 1) // batch_size
        starts = np.arange(batch_size) * length + (step % windows) * self.T
        index = starts[None, :] + np.arange(self.T)[:, None]
        return (backend.to_device(self._one_hot(ids[index])),
                backend.to_device(ids[index + 1]), None)

    def eval_batches(self, n: int = 1000, seed: int = 0, batch_size: int = 1000,
                     split: str = "validation"):
        """The whole ``split`` as ``min(n, batch_size)`` streams in windows of T steps, with a
        mask over the padding; ``seed`` is unused."""
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
        ids = self.ids[split]
        targets_total = len(ids) - 1
        S = min(validate.positive_int("n", n), validate.positive_int("batch_size", batch_size),
                targets_total)
        length = -(-targets_total // S)  # ceil: the last stream is padded
        padded = np.zeros(S * length + 1, dtype=np.int64)
        padded[:len(ids)] = ids
        valid = np.zeros(S * length, dtype=bool)
        valid[:targets_total] = True
        for start in range(0, length, self.T):
            steps = min(self.T, length - start)
            index = (np.arange(S) * length + start)[None, :] + np.arange(steps)[:, None]
            yield (backend.to_device(self._one_hot(padded[index])),
                   backend.to_device(padded[index + 1]),
                   backend.to_device(valid[index].astype(self.dtype)))

    def metric(self, outputs, targets, mask=None) -> dict:
        loss = softmax_cross_entropy(outputs, targets, mask)[0]
        right = (outputs.argmax(axis=-1) == targets).astype(outputs.dtype)
        if mask is not None:
            right = right * mask
        count = float(mask.sum()) if mask is not None else math.prod(targets.shape)
        return {"loss": loss, "bpc": bits_per_character(loss),
                "accuracy": float(right.sum()) / count}

    def baseline(self) -> dict:
        """A uniform predictor over the vocabulary."""
        return {"bpc": math.log2(self.n_out), "loss": math.log(self.n_out),
                "accuracy": 1.0 / self.n_out}
