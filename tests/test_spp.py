"""SPP's importance pinned on a model small enough to compute by hand; the shared loop's invariants."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from scanner.spp import TrainConfig, accumulate, freed, prediction_entropy, spp_importance, train_task


class TwoWeights(nn.Module):
    """logits = (w1 * x, w2 * x) for scalar inputs x: a 2-parameter softmax model."""

    def __init__(self, w1: float, w2: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([w1, w2], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, None] * self.w[None, :]  # (B, 2)


def omega_by_hand(w: tuple[float, float], batches: list[list[float]], *, reduction: str) -> list[float]:
    """Independent computation: dH/dz_k = -p_k (log p_k + H) per sample, dz_k/dw_k = x; no autograd."""
    out = [0.0, 0.0]
    for batch in batches:
        g = [0.0, 0.0]
        for x in batch:
            z = [w[0] * x, w[1] * x]
            m = max(z)
            e = [math.exp(v - m) for v in z]
            p = [v / sum(e) for v in e]
            h = -sum(q * math.log(q) for q in p)
            for k in range(2):
                g[k] += -p[k] * (math.log(p[k]) + h) * x / (len(batch) if reduction == "mean" else 1)
        for k in range(2):
            out[k] += max(0.0, g[k] * w[k] + 0.5 * w[k] ** 2 * g[k] ** 2) / len(batches)
    return out


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_spp_omega_matches_the_hand_computation_on_a_two_parameter_softmax(reduction):
    w = (1.5, 0.5)
    batches = [[0.5, -1.0, 2.0], [1.5, 0.25], [-0.75, 3.0, 1.0, -2.0]]
    model = TwoWeights(*w)
    omega = spp_importance(model.named_parameters(), model, [torch.tensor(b, dtype=torch.float64) for b in batches],
                           reduction=reduction)
    expected = omega_by_hand(w, batches, reduction=reduction)
    assert torch.allclose(omega["w"], torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-12)
    assert omega["w"][0] == 0 and omega["w"][1] > 0  # one estimate clipped at 0, one not: both branches exercised


def test_summed_entropy_scales_omega_with_batch_size_and_the_mean_does_not():
    model = TwoWeights(0.7, -0.4)
    x = torch.linspace(-2, 2, 8, dtype=torch.float64)
    one = spp_importance(model.named_parameters(), model, [x], reduction="sum")["w"]
    twice = spp_importance(model.named_parameters(), model, [torch.cat([x, x])], reduction="sum")["w"]
    mean_one = spp_importance(model.named_parameters(), model, [x], reduction="mean")["w"]
    mean_twice = spp_importance(model.named_parameters(), model, [torch.cat([x, x])], reduction="mean")["w"]
    assert not torch.allclose(one, twice) and torch.allclose(mean_one, mean_twice)


def test_freed_parameters_are_exactly_those_with_zero_omega():
    torch.manual_seed(0)
    trunk, head_a, head_b = nn.Linear(4, 6), nn.Linear(6, 2), nn.Linear(6, 2)
    with torch.no_grad():
        trunk.weight[2:4] = 0.0  # zero weights: g * 0 + 0 = 0 exactly
        head_a.weight[:, 5] = 0.0  # trunk unit 5 feeds nothing on head a: zero gradient for its row
    omega = spp_importance(trunk.named_parameters(), lambda x: head_a(torch.relu(trunk(x))), [torch.randn(16, 4)])
    mask = freed(omega)
    assert torch.equal(mask["weight"], omega["weight"] == 0)
    assert mask["weight"][2:4].all() and mask["weight"][5].all()
    assert (~mask["weight"]).any() and not mask["bias"].all()  # not everything is freed
    both = accumulate(accumulate(None, omega), omega, mode="max")
    assert torch.equal(both["weight"], omega["weight"]) and torch.equal(accumulate(omega, omega)["weight"], 2 * omega["weight"])
    with pytest.raises(ValueError, match="reduction"):
        prediction_entropy(torch.zeros(2, 2), reduction="median")


def test_spp_with_lambda_zero_is_exactly_fine_tuning():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    omega = spp_importance(net[0].named_parameters(prefix="0"), net, [x[:32], x[32:]])
    plain, spp = copy.deepcopy(net), copy.deepcopy(net)
    cfg = TrainConfig(epochs=3, batch=16, lr=1e-2, seed=5)
    train_task(plain, plain, x, y, config=cfg)
    train_task(spp, spp, x, y, config=cfg, omega=omega, lam=0.0)
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), spp.parameters()))
    held = copy.deepcopy(net)
    train_task(held, held, x, y, config=cfg, omega=omega, lam=1e6)  # a huge lambda holds the scored weights
    moved = lambda m: float((m[0].weight - net[0].weight).detach().abs().max())  # noqa: E731
    assert moved(held) < moved(plain)


def test_ewc_and_mas_match_their_closed_forms_on_the_two_parameter_model():
    from scanner.spp import ewc_importance, mas_importance

    w, xs, ys = (1.5, 0.5), [0.5, -1.0, 2.0, 1.5], [0, 1, 1, 0]
    model = TwoWeights(*w)
    x = torch.tensor(xs, dtype=torch.float64)
    ewc = ewc_importance(model.named_parameters(), model, x, torch.tensor(ys))["w"]
    mas = mas_importance(model.named_parameters(), model, x)["w"]
    fisher, mag = [0.0, 0.0], [0.0, 0.0]
    for xi, yi in zip(xs, ys):
        e = [math.exp(w[0] * xi), math.exp(w[1] * xi)]
        p = [v / sum(e) for v in e]
        for k in range(2):
            fisher[k] += (xi * ((k == yi) - p[k])) ** 2 / len(xs)  # d(-log p_y)/dw_k = -x (1[k=y] - p_k)
            mag[k] += abs(2 * w[k] * xi * xi) / len(xs)  # d(z_1^2 + z_2^2)/dw_k = 2 w_k x^2
    assert torch.allclose(ewc, torch.tensor(fisher, dtype=torch.float64))
    assert torch.allclose(mas, torch.tensor(mag, dtype=torch.float64))


def test_spp_plus_keeps_protecting_a_task_the_model_already_fits():
    from scanner.spp import spp_plus_importance

    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    x = torch.randn(128, 8)
    y = (x[:, 0] > 0).long()
    train_task(net, net, x, y, config=TrainConfig(epochs=60, batch=32, lr=1e-2))
    assert float((net(x).argmax(1) == y).float().mean()) > 0.97  # fit, and confident
    params = lambda: net[0].named_parameters(prefix="0")  # noqa: E731
    spp = spp_importance(params(), net, x.split(32))
    plus = spp_plus_importance(params(), net, x, temperature=2.0)
    share_freed = lambda om: float(sum((o == 0).sum() for o in om.values()) / sum(o.numel() for o in om.values()))  # noqa: E731
    assert share_freed(plus) == 0.0 < share_freed(spp)  # SPP's clamp frees weights the fit task still uses
    doubled = spp_plus_importance(params(), net, torch.cat([x, x]), temperature=2.0)
    assert torch.allclose(doubled["0.weight"], plus["0.weight"])  # a per-sample mean: the data's size does not scale it
