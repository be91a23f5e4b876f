"""Recurrent models with hand-written forward, BPTT and R-op passes."""
from .elman import ACTIVATIONS, OUTPUT_MODES, ElmanCache, ElmanRNN, ElmanSpec
from .init import INITS

MODELS = ("elman",)

__all__ = ["ACTIVATIONS", "INITS", "MODELS", "OUTPUT_MODES", "ElmanCache", "ElmanRNN",
           "ElmanSpec"]
