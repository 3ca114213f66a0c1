"""A linear probe: multinomial logistic regression on fixed features (e.g. posterior means).

Trained on the given rows only (in a weak-supervision study, the paired rows of the run's
mask) and scored on the test split: how much of a label is linearly readable from a latent.
Features are standardised with the training rows' mean and spread; the convex loss (cross
entropy plus a small L2 penalty on the weights) is minimised with full-batch L-BFGS, so the
result is deterministic and does not depend on a learning rate.
"""

from __future__ import annotations

import torch

L2 = 1e-4  # keeps the optimum finite on separable rows
MAX_ITERATIONS = 500


def fit_linear_probe(features: torch.Tensor, labels: torch.Tensor, classes: int, l2: float = L2,
                     max_iterations: int = MAX_ITERATIONS):
    """Fit softmax(W standardise(x) + b).

    Args:
        features: ``[N, F]``.
        labels: ``long[N]`` in [0, classes).
        classes: K.

    Returns:
        ``predict(features [N', F]) -> long[N']``.
    """
    x = features.detach().double()
    y = labels.detach().long()
    if x.shape[0] == 0:
        raise ValueError("a linear probe needs at least one training row")
    centre = x.mean(dim=0)
    scale = x.std(dim=0, correction=0).clamp(min=1e-8)
    x = (x - centre) / scale
    weight = torch.zeros(x.shape[1], classes, dtype=x.dtype, requires_grad=True)
    bias = torch.zeros(classes, dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iterations, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight + bias, y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    weight, bias = weight.detach(), bias.detach()

    def predict(new: torch.Tensor) -> torch.Tensor:
        return (((new.detach().double() - centre) / scale) @ weight + bias).argmax(dim=1)

    return predict


def linear_probe_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                          test_labels: torch.Tensor, classes: int) -> float:
    """Accuracy on the test rows of a probe fitted on the training rows.

    Args:
        train_features: ``[N, F]``, e.g. the means of q(z | x) of the paired rows.
        train_labels: ``long[N]``.
        test_features: ``[T, F]``.
        test_labels: ``long[T]``.
        classes: K.
    """
    predict = fit_linear_probe(train_features, train_labels, classes)
    return float((predict(test_features) == test_labels.long()).double().mean())
