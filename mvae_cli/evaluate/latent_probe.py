"""The latent linear probe (MoPoE paper's representation metric): a multinomial logistic
regression on the posterior mean of q(z | S), fitted on the first ``n_train`` training
examples and scored on the test split, for each subset S of the non-class modalities the model
conditions on.

The regression is the one linear probe of :mod:`~mvae_cli.evaluate.probe`.
"""

from __future__ import annotations

import itertools

import torch

from mvae_cli.evaluate.coherence import class_modality
from mvae_cli.evaluate.probe import linear_probe_accuracy

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
            out["+".join(subset)] = linear_probe_accuracy(*_means(model, train, subset, n_tr),
                                                          *_means(model, test, subset, n_te), spec.classes)
    return out
