"""Character-level Penn Treebank text (Mikolov's ``ptb.char.*.txt``).

The format: every symbol followed by one space, ``_`` between words, and each sentence ended by
a newline that is itself a symbol; so the file is ``' '.join(symbols) + ' '`` and tokenises as
``text.split(' ')`` without the final empty string. The vocabulary is the sorted set of the
training file's symbols (50 for PTB: 49 printable and the newline).
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import ConfigError


def read_char_symbols(path) -> list:
    """The symbols of a PTB character-level file (each one character; ``"\\n"`` included).

    Raises ConfigError (one line naming the file) if it is missing, not ASCII, empty, or not
    in the one-symbol-then-a-space format."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"text file {path} does not exist")
    try:
        with open(path, encoding="ascii", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"text file {path} cannot be read as ASCII ({exc})") from None
    if not text:
        raise ConfigError(f"text file {path} is empty")
    if len(text) % 2 or text[1::2].strip(" "):
        raise ConfigError(f"text file {path} is not in PTB character format (every symbol "
                          "followed by one space)")
    return list(text[0::2])


class Vocabulary:
    """Symbols <-> ids, from the sorted set of a training text's symbols."""

    def __init__(self, symbols):
        self.symbols = sorted(set(symbols))
        self.index = {s: i for i, s in enumerate(self.symbols)}

    def __len__(self):
        return len(self.symbols)

    def encode(self, symbols, where: str = "text") -> np.ndarray:
        """int64 ids of ``symbols``; a symbol outside the vocabulary is a ConfigError naming
        it (PTB's validation and test files use only training symbols)."""
        try:
            return np.fromiter((self.index[s] for s in symbols), dtype=np.int64,
                               count=len(symbols))
        except KeyError as exc:
            raise ConfigError(f"{where} holds symbol {exc.args[0]!r}, which the training file "
                              "does not") from None
