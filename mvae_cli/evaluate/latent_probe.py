"""The latent linear probe (MoPoE paper's representation metric): a multinomial logistic
regression on the posterior mean of q(z | S), fitted on the first ``n_train`` training
examples and scored on the test split, for each subset S of the non-class modalities the model
conditions on.

The regression is the one linear probe of :mod:`~mvae_cli.evaluate.probe`, every subset's at once.
"""

from __future__ import annotations

import itertools

import torch

from mvae_cli.evaluate.coherence import class_modality
from mvae_cli.evaluate.probe import linear_probes_accuracy

def _experts(model, data, used, n: int, batch_size: int = 1000) -> tuple[list, torch.Tensor]:
    """The experts ``(mu, logvar)`` of the modalities ``used`` for the first ``n`` rows, per batch
    (every encoder once, as the estimator does), and the rows' classes."""
    label = class_modality(model.specs)
    shown = torch.tensor([m in used for m in model.names], device=data.device)
    experts, labels = [], []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            batch = data.batch(torch.arange(start, min(start + batch_size, n)))
            experts.append(model.encode(batch, shown.expand(batch[label].shape[0], -1)))
            labels.append(batch[label].cpu())
    return experts, torch.cat(labels)


def _means(model, experts: list, given) -> torch.Tensor:
    """The means of q(z | given) ``[N, D]`` (float64, on the host) from the experts of :func:`_experts`."""
    with torch.inference_mode():
        return torch.cat([model.posterior(None, list(given), experts=e).mean.double().cpu() for e in experts])


def probe_accuracy(model, train, test, *, n_train: int = 1000, limit: int | None = None) -> dict[str, float]:
    """``{"m0+m1": test accuracy, …}`` for each subset of the non-class modalities the model conditions on."""
    label = class_modality(model.specs)
    spec = next(s for s in model.specs if s.name == label)
    inputs = [n for n in model.names if n != label]
    n_tr, n_te = min(n_train, train.n), test.n if limit is None else min(limit, test.n)
    subsets = [subset for size in range(1, len(inputs) + 1) for subset in itertools.combinations(inputs, size)
               if model.posterior_reason(list(subset)) is None]
    used = {m for subset in subsets for m in subset}
    (train_experts, train_labels), (test_experts, test_labels) = (_experts(model, train, used, n_tr),
                                                                  _experts(model, test, used, n_te))
    if not subsets:
        return {}
    # one probe per subset, all fitted at once: the same rows and classes
    accuracies = linear_probes_accuracy(torch.stack([_means(model, train_experts, subset) for subset in subsets]),
                                        train_labels, torch.stack([_means(model, test_experts, subset) for subset in subsets]),
                                        test_labels, spec.classes)
    return {"+".join(subset): accuracy for subset, accuracy in zip(subsets, accuracies)}
