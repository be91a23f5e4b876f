"""Forward pass and BPTT against torch.nn.RNN + nn.Linear on identical weights (float64).

Runs only where PyTorch is installed (`pip install -e '.[compare]'`); it is an independent
implementation of the same equations, so agreement to round-off checks forward and backward
together. Tolerance 1e-10: both sides compute the same float64 sums in different orders, which
differ by ~1e-15 relative; anything structural (a transposed matrix, a missing term) is O(1).
"""
import numpy as np
import pytest

from rnnlab import losses, objective
from rnnlab.models import ElmanRNN

torch = pytest.importorskip("torch")

TOL = 1e-10  # see the module docstring


def torch_pair(model):
    """torch modules holding ``model``'s weights (b_hh = 0, so b_ih plays rnnlab's b)."""
    s = model.spec
    rnn = torch.nn.RNN(s.n_in, s.hidden[0], num_layers=s.layers, nonlinearity=s.activation,
                       bias=s.bias, dtype=torch.float64)
    head = torch.nn.Linear(s.hidden[-1], s.n_out, bias=s.bias, dtype=torch.float64)
    p = model.params
    with torch.no_grad():
        for i in range(s.layers):
            getattr(rnn, f"weight_ih_l{i}").copy_(torch.from_numpy(p[f"layer{i + 1}.W_in"]))
            getattr(rnn, f"weight_hh_l{i}").copy_(torch.from_numpy(p[f"layer{i + 1}.W_rec"]))
            if s.bias:
                getattr(rnn, f"bias_ih_l{i}").copy_(torch.from_numpy(p[f"layer{i + 1}.b"]))
                getattr(rnn, f"bias_hh_l{i}").zero_()
        head.weight.copy_(torch.from_numpy(p["out.W"]))
        if s.bias:
            head.bias.copy_(torch.from_numpy(p["out.b"]))
    return rnn, head


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("outputs", ["every", "last"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layers", [1, 2])
def test_matches_torch_rnn(activation, outputs, bias, layers):
    model = ElmanRNN.create(3, (5,) * layers, 2, activation=activation, bias=bias,
                            outputs=outputs, init="orthogonal", seed=layers, dtype="float64")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 4, 3))
    y = rng.standard_normal((4, 2) if outputs == "last" else (6, 4, 2))
    value, grads, _ = objective.loss_and_grads(model, model.params, x, y, losses.mse)

    rnn, head = torch_pair(model)
    h, _ = rnn(torch.from_numpy(x))
    out = head(h[-1] if outputs == "last" else h)
    loss = torch.nn.functional.mse_loss(out, torch.from_numpy(y))
    loss.backward()

    assert abs(value - loss.item()) <= TOL * abs(loss.item())
    s = model.spec
    for i in range(s.layers):
        assert rel(grads[f"layer{i + 1}.W_in"],
                   getattr(rnn, f"weight_ih_l{i}").grad.numpy()) < TOL
        assert rel(grads[f"layer{i + 1}.W_rec"],
                   getattr(rnn, f"weight_hh_l{i}").grad.numpy()) < TOL
        if bias:
            assert rel(grads[f"layer{i + 1}.b"], getattr(rnn, f"bias_ih_l{i}").grad.numpy()) < TOL
    assert rel(grads["out.W"], head.weight.grad.numpy()) < TOL
    if bias:
        assert rel(grads["out.b"], head.bias.grad.numpy()) < TOL
