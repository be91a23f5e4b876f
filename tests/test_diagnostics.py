"""Gradient-flow diagnostics (rnnlab.train.diagnostics): the per-step norms against a case
whose decay is known exactly, every registered model's support, and the trainer's records and
figure."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rnnlab import ConfigError, backend, losses
from rnnlab.config import RunConfig
from rnnlab.models import MODELS, make_model
from rnnlab.objective import Batch
from rnnlab.train import FileSink, MemorySink, run
from rnnlab.train.diagnostics import FLOW_FILE, gradient_flow, gradient_flow_figure


def _batch(n_in, T, B, n_out, seed=0):
    rng = np.random.default_rng(seed)
    return Batch(backend.to_device(rng.standard_normal((T, B, n_in))),
                 backend.to_device(rng.standard_normal((B, n_out))), None, None)


def test_a_linear_rnn_halves_the_gradient_at_every_step_back(xp):
    """h_t = 0.5 h_{t-1} + W_in x_t with the output read at the last step only: dLoss/dh_{t-1}
    = 0.5 dLoss/dh_t exactly, so the recorded norms fall by 2 per step towards t = 1."""
    model = make_model("elman", 3, 2, "last", dtype="float64", hidden=5, activation="identity",
                       init="identity", gain=0.5)
    flow = gradient_flow(model, model.params, _batch(3, 12, 4, 2), losses.mse)
    norms = np.array(flow["grad_h"][0])
    assert norms.shape == (12,) and "memory_change" not in flow
    np.testing.assert_allclose(norms[:-1] / norms[1:], 0.5, rtol=1e-12)


@pytest.mark.parametrize("kind", list(MODELS))
def test_every_registered_model_reports_its_flow(kind):
    """The norms are those of the model's own hidden_gradients, one list of T per layer (2
    layers); memory cells add the change of their memory per step."""
    model = make_model(kind, 3, 2, "last", dtype="float64", hidden=[4, 5], seed=1)
    batch = _batch(3, 6, 2, 2, seed=2)
    flow = gradient_flow(model, model.params, batch, losses.mse)
    y, cache = model.forward(model.params, batch.x)
    dy = losses.mse(y, batch.targets, None)[1]
    for norms, d in zip(flow["grad_h"], model.hidden_gradients(model.params, dy, cache),
                        strict=True):
        d = backend.to_host(d)
        np.testing.assert_allclose(norms, np.sqrt((d * d).sum(axis=(1, 2))), rtol=1e-12)
    assert [len(n) for n in flow["grad_h"]] == [6, 6]
    if callable(getattr(model, "memory", None)):
        for change, m in zip(flow["memory_change"], model.memory(cache), strict=True):
            step = np.diff(backend.to_host(m), axis=0)
            np.testing.assert_allclose(change, np.sqrt((step * step).sum(axis=(1, 2))),
                                       rtol=1e-12)


def _config(**train):
    return RunConfig.from_dict({
        "task": {"name": "adding", "T": 8}, "model": {"name": "elman", "hidden": 6},
        "optimizer": {"name": "adam"},
        "train": {"steps": 6, "batch": 4, "eval_every": 3, "eval_size": 8, "test_size": 0,
                  "flow_every": 2, **train}})


def test_the_trainer_records_flow_and_draws_it(tmp_path):
    folder = tmp_path / "run"
    result = run(_config(), FileSink(str(folder)), progress=False)
    flows = [r for r in result.history if r["kind"] == "flow"]
    assert [r["step"] for r in flows] == [0, 2, 4]
    assert all(len(r["grad_h"]) == 1 and len(r["grad_h"][0]) == 8 for r in flows)
    written = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r for r in written if r["kind"] == "flow"] == flows
    assert (folder / FLOW_FILE).stat().st_size > 0
    # the records measure, they do not change training
    plain = run(_config(flow_every=0), MemorySink(), progress=False)
    for k in plain.params:
        np.testing.assert_array_equal(plain.params[k], result.params[k])


def test_the_figure_needs_records_and_flow_needs_the_method():
    with pytest.raises(ConfigError, match="flow_every"):
        gradient_flow_figure([{"kind": "eval", "step": 0}])

    class NoFlow:
        pass

    with pytest.raises(ConfigError, match="hidden_gradients"):
        gradient_flow(NoFlow(), {}, None, losses.mse)
