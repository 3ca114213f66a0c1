"""The latent linear probe (MoPoE paper's representation metric): a multinomial logistic
regression on the posterior mean of q(z | S), fitted on the first ``n_train`` training
examples and scored on the test split, for each subset S of the non-class modalities the model
conditions on.

(A small one of our own: the ``truth`` branch has a linear probe too; one should go.)
"""

from __future__ import annotations

import itertools

import torch

from mvae_cli.evaluate.coherence import class_modality

L2 = 1e-3
STEPS = 100


def fit_logistic(features: torch.Tensor, labels: torch.Tensor, classes: int, l2: float = L2) -> dict:
    """Multinomial logistic regression by L-BFGS on standardised features.

    Args:
        features: ``[N, D]``.
        labels: ``long [N]``.

    Returns:
        ``{"w": [D + 1, C] (the last row the bias), "mean": [D], "scale": [D]}``, the weights
        over features standardised by that mean and scale: use :func:`predict_logistic`.
    """
    x = features.double()
    mean = x.mean(0)
    scale = x.std(0).clamp(min=1e-6) if x.shape[0] > 1 else torch.ones(x.shape[1], dtype=x.dtype)
    x = torch.cat([(x - mean) / scale, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    w = torch.zeros(x.shape[1], classes, dtype=x.dtype, requires_grad=True)
    optimizer = torch.optim.LBFGS([w], max_iter=STEPS, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w, labels) + l2 * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return {"w": w.detach(), "mean": mean, "scale": scale}


def predict_logistic(fit: dict, features: torch.Tensor) -> torch.Tensor:
    """Class ids ``long [N]`` of ``features [N, D]`` under a :func:`fit_logistic` fit."""
    x = (features.double() - fit["mean"]) / fit["scale"]
    return (torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1) @ fit["w"]).argmax(dim=1)


def _means(model, data, given, n: int, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    label = class_modality(model.specs)
    feats, labels = [], []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            batch = data.batch(torch.arange(start, min(start + batch_size, n)))
            feats.append(model.posterior(batch, list(given)).mean.double().cpu())
            labels.append(batch[label].cpu())
    return torch.cat(feats), torch.cat(labels)


def probe_accuracy(model, train, test, *, n_train: int = 1000, limit: int | None = None) -> dict[str, float]:
    """``{"m0+m1": test accuracy, …}`` for each subset of the non-class modalities the model conditions on."""
    label = class_modality(model.specs)
    spec = next(s for s in model.specs if s.name == label)
    inputs = [n for n in model.names if n != label]
    n_tr, n_te = min(n_train, train.n), test.n if limit is None else min(limit, test.n)
    out = {}
    for size in range(1, len(inputs) + 1):
        for subset in itertools.combinations(inputs, size):
            if model.posterior_reason(list(subset)) is not None:
                continue
            fit = fit_logistic(*_means(model, train, subset, n_tr), spec.classes)
            features, labels = _means(model, test, subset, n_te)
            out["+".join(subset)] = float((predict_logistic(fit, features) == labels).double().mean())
    return out
