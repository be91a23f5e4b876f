"""argparse ``type=`` converters shared by the command lines (``rnnlab train``/``demo``,
``verify``, ``kappa-table``): each raises ArgumentTypeError, which argparse turns into one line
naming the flag. Light on purpose: building a parser imports nothing else."""
from __future__ import annotations

import argparse


def int_at_least(minimum: int):
    """One integer >= ``minimum``."""
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}; got {text!r}")
        return value
    convert.__name__ = f"integer >= {minimum}"
    return convert
