"""The linear probe on separable data, on data with a known Bayes accuracy, and on noise."""

import math

import pytest
import torch

from mvae_cli.evaluate import probe
from mvae_cli.evaluate.probe import linear_probe_accuracy


def _blobs(n, centres, spread, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, len(centres), (n,), generator=g)
    return torch.tensor(centres, dtype=torch.float64)[labels] + spread * torch.randn(n, 2, generator=g, dtype=torch.float64), labels


def test_linearly_separable_classes_are_all_right():
    centres = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]
    train, test = _blobs(300, centres, 1.0, 0), _blobs(3000, centres, 1.0, 1)
    assert linear_probe_accuracy(*train, *test, classes=3) == 1.0


def test_two_unit_gaussians_reach_the_bayes_accuracy():
    # N(−1, 1) against N(+1, 1) in the first feature (the second is noise): Bayes accuracy Φ(1) = 0.8413.
    centres = [[-1.0, 0.0], [1.0, 0.0]]
    accuracy = linear_probe_accuracy(*_blobs(4000, centres, 1.0, 2), *_blobs(20000, centres, 1.0, 3), classes=2)
    assert accuracy == pytest.approx(0.5 * (1 + math.erf(1 / math.sqrt(2))), abs=0.01)


def test_labels_unrelated_to_the_features_give_chance():
    g = torch.Generator().manual_seed(4)
    features = torch.randn(6000, 5, generator=g)
    labels = torch.randint(0, 4, (6000,), generator=g)
    accuracy = linear_probe_accuracy(features[:2000], labels[:2000], features[2000:], labels[2000:], classes=4)
    assert accuracy == pytest.approx(0.25, abs=0.03)


def _problem(S, N, F, K, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(S, N, F, generator=g, dtype=torch.float64)
    w = torch.randn(F, K, generator=g, dtype=torch.float64)
    y = (x @ w + torch.randn(S, N, K, generator=g, dtype=torch.float64)).argmax(dim=-1)
    return x, y, torch.cat([x, x.new_ones(S, N, 1)], dim=2)


def _penalty(F, K):
    penalty = torch.full((F + 1, K), probe.L2, dtype=torch.float64)
    penalty[F] = 0.0
    return penalty


def test_newton_reaches_the_optimum_where_the_loss_gradient_vanishes():
    S, N, F, K = 3, 400, 4, 3
    x, y, design = _problem(S, N, F, K, 5)
    theta = probe._newton(design, y, _penalty(F, K), probe.MAX_ITERATIONS).requires_grad_()
    # the loss written out by hand: mean cross entropy of x W + b plus l2 Σ W², summed over the problems
    weight, bias = theta[:, :F], theta[:, F]
    loss = sum(torch.nn.functional.cross_entropy(x[s] @ weight[s] + bias[s], y[s]) + probe.L2 * weight[s].pow(2).sum()
               for s in range(S))
    (grad,) = torch.autograd.grad(loss, theta)
    assert float(grad.abs().max()) < 1e-9


def test_newton_and_lbfgs_find_the_same_optimum():
    # The optimum is unique up to one shift of every bias: compare the weights and the centred biases.
    S, N, F, K = 2, 500, 3, 4
    _, y, design = _problem(S, N, F, K, 6)
    newton = probe._newton(design, y, _penalty(F, K), probe.MAX_ITERATIONS)
    for s in range(S):
        lbfgs = probe._lbfgs(design[s], y[s], _penalty(F, K))
        assert torch.allclose(newton[s, :F], lbfgs[:F], atol=1e-5)
        assert torch.allclose(newton[s, F] - newton[s, F].mean(), lbfgs[F] - lbfgs[F].mean(), atol=1e-5)


def test_probes_fitted_at_once_predict_as_each_alone():
    S, N, F, K = 4, 300, 5, 3
    x, y, _ = _problem(S, N, F, K, 7)
    test = torch.randn(1000, F, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    together = probe.fit_linear_probes(x.float(), y, K)
    for s in range(S):
        alone = probe.fit_linear_probe(x[s].float(), y[s], K)
        assert torch.equal(together[s](test), alone(test))


def test_a_large_probe_takes_lbfgs_and_agrees_with_newton(monkeypatch):
    S, N, F, K = 1, 600, 6, 3
    x, y, _ = _problem(S, N, F, K, 9)
    test = torch.randn(2000, F, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    newton = probe.fit_linear_probe(x[0], y[0], K)(test)
    monkeypatch.setattr(probe, "NEWTON_PARAMETERS", 1)
    lbfgs = probe.fit_linear_probe(x[0], y[0], K)(test)
    assert float((newton == lbfgs).double().mean()) > 0.999


def test_problems_solved_in_batches_within_the_memory_budget_give_the_same_probes(monkeypatch):
    S, N, F, K = 5, 200, 4, 3
    x, y, _ = _problem(S, N, F, K, 11)
    test = torch.randn(500, F, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    shared = x[0].expand(S, N, F)  # one feature matrix for every problem, as the fair probes pass it
    together = [p(test) for p in probe.fit_linear_probes(shared, y, K)]
    monkeypatch.setattr(probe, "PROBE_BYTES", 1)  # one problem a batch
    alone = [p(test) for p in probe.fit_linear_probes(shared, y, K)]
    assert all(torch.equal(a, b) for a, b in zip(together, alone))
