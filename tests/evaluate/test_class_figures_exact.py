"""Coherence and the latent probe with every encoder run once per batch give exactly the figures of
asking ``model.posterior`` to encode each subset anew (the code before, kept here as the reference)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from mvae_cli.data.format import ModalitySpec
from mvae_cli.evaluate.coherence import _classify, class_modality, coherence
from mvae_cli.evaluate.latent_probe import _experts, _means, probe_accuracy
from mvae_cli.evaluate.probe import linear_probe_accuracy
from mvae_cli.model.jmvae import JMVAE
from mvae_cli.model.model import MultimodalVAE

SPECS = [ModalitySpec("image", "image", "bernoulli", (1, 4, 4)),
         ModalitySpec("label", "categorical", "categorical", (), 3),
         ModalitySpec("bits", "binary", "bernoulli", (5,)), ModalitySpec("kind", "categorical", "categorical", (), 2)]


class Data:
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.n, self.device = n, torch.device("cpu")
        self.label = torch.randint(0, 3, (n,), generator=g)
        self.image = (torch.rand(n, 1, 4, 4, generator=g) + self.label[:, None, None, None] / 3).clamp(0, 1)
        self.bits = (torch.rand(n, 5, generator=g) < 0.5).float()
        self.kind = torch.randint(0, 2, (n,), generator=g)

    def batch(self, index):
        return {"image": self.image[index], "label": self.label[index], "bits": self.bits[index],
                "kind": self.kind[index], "mask": torch.ones(len(index), 4, dtype=torch.bool)}  # unused: fully observed


def _reference_coherence(model, data, classifiers, *, limit, prior_samples, seed, batch_size):
    label = class_modality(model.specs)
    scorable = [n for n in model.names if (n == label or n in classifiers) and model.generation_reason([n]) is None]
    n = min(limit, data.n)
    generator = torch.Generator().manual_seed(seed)
    right = {t: {} for t in scorable}
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            batch = data.batch(torch.arange(start, min(start + batch_size, n)))
            truth = batch[label]
            for target in scorable:
                others = [m for m in model.names if m != target]
                for size in range(1, len(others) + 1):
                    for subset in itertools.combinations(others, size):
                        if model.posterior_reason(list(subset)) is not None:
                            continue
                        q = model.posterior(batch, list(subset))
                        eps = torch.randn(truth.shape[0], 1, model.latent_dim, generator=generator)
                        z = q.rsample(eps, 0, 1).squeeze(1)
                        tally = right[target].setdefault(size, [0, 0])
                        tally[0] += int((_classify(model, target, z, classifiers, label) == truth).sum())
                        tally[1] += truth.shape[0]
        z = model.prior_from_noise(torch.randn(prior_samples, model.latent_dim, generator=generator))
        predictions = torch.stack([_classify(model, t, z, classifiers, label) for t in scorable])
    cross = {t: {str(s): h / c for s, (h, c) in sorted(sizes.items())} for t, sizes in right.items() if sizes}
    return cross, float((predictions == predictions[:1]).all(dim=0).double().mean())


def _reference_means(model, data, given, n):
    """The probe's features before: q(z | given) encoded anew for each subset, in batches of 1,000."""
    batches = [data.batch(torch.arange(s, min(s + 1000, n))) for s in range(0, n, 1000)]
    with torch.inference_mode():
        return torch.cat([model.posterior(b, list(given)).mean.double() for b in batches])


def _model(kind):
    torch.manual_seed(0)
    model = JMVAE(SPECS, 3, 16) if kind == "jmvae" else MultimodalVAE(SPECS, 3, 16, "mlp", fusion=kind)
    return model.eval()


@pytest.mark.parametrize("kind", ["poe", "mopoe", "jmvae"])
def test_coherence_and_the_probe_equal_the_subset_by_subset_figures(kind):
    model, data, train = _model(kind), Data(130, 1), Data(1200, 2)
    torch.manual_seed(1)
    classifiers = {"image": nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), "bits": nn.Linear(5, 3)}
    result = coherence(model, data, classifiers, limit=110, prior_samples=300, seed=4, batch_size=50)
    cross, joint = _reference_coherence(model, data, classifiers, limit=110, prior_samples=300, seed=4, batch_size=50)
    assert result["cross"] == cross and result["joint"] == joint
    assert len(cross["label"]) == (1 if kind == "jmvae" else 3)  # sizes 1–3 (jmvae: one modality only)
    inputs = [n for n in model.names if n != "label"]
    subsets = [s for size in (1, 2, 3) for s in itertools.combinations(inputs, size)
               if model.posterior_reason(list(s)) is None]
    used = {m for s in subsets for m in s}
    experts, labels = _experts(model, train, used, 1100)
    assert torch.equal(labels, train.label[:1100])
    for subset in subsets:
        assert torch.equal(_means(model, experts, subset), _reference_means(model, train, subset, 1100))


def test_the_probe_fits_the_features_of_each_subset():
    torch.manual_seed(0)
    model = MultimodalVAE(SPECS[:3], 3, 16, "mlp").eval()  # image, label, bits
    train, test = Data(150, 2), Data(100, 3)
    for data in (train, test):  # bits that show the class: the probes converge fast
        data.bits = (nn.functional.one_hot(data.label, 5) + 0.2 * torch.rand(data.n, 5) > 0.5).float()
    result = probe_accuracy(model, train, test, n_train=120, limit=80)
    expected = {"+".join(subset): linear_probe_accuracy(_reference_means(model, train, subset, 120), train.label[:120],
                                                        _reference_means(model, test, subset, 80), test.label[:80], 3)
                for subset in (["image"], ["bits"], ["image", "bits"])}
    assert result == expected
