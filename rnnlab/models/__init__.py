"""Recurrent models with hand-written forward, BPTT and R-op passes, built by name.

:data:`MODELS` is the registry (``make_model("elman", n_in, n_out, outputs, **options)``); the
protocol every model follows is in :mod:`rnnlab.models.base`.
"""
from .base import MODELS, OUTPUT_MODES, RecurrentModel, make_model
from .elman import ACTIVATIONS, ElmanCache, ElmanRNN, ElmanSpec
from .gru import GRU, GRUCache, GRUSpec
from .init import INITS
from .janet import JANET, JANETCache, JANETSpec
from .lstm import LSTM, LSTMCache, LSTMSpec
from .mlstm import MLSTM, MLSTMCache, MLSTMSpec
from .nru import NRU, NRUCache, NRUSpec

# The registry: one line per model.
MODELS.register("elman", ElmanRNN)
MODELS.register("lstm", LSTM)
MODELS.register("gru", GRU)
MODELS.register("janet", JANET)
MODELS.register("mlstm", MLSTM)
MODELS.register("nru", NRU)

__all__ = ["ACTIVATIONS", "INITS", "MODELS", "OUTPUT_MODES", "ElmanCache", "ElmanRNN",
           "ElmanSpec", "GRU", "GRUCache", "GRUSpec", "LSTM", "LSTMCache", "LSTMSpec",
           "JANET", "JANETCache", "JANETSpec",
           "MLSTM", "MLSTMCache", "MLSTMSpec", "NRU", "NRUCache", "NRUSpec",
           "RecurrentModel", "make_model"]
