"""Coherence with a model whose decoders return the true class (1) or the next one (0), the
classifier cache."""

from __future__ import annotations

import torch
from torch import nn

from mvae_cli.data.format import ModalitySpec
from mvae_cli.evaluate.coherence import coherence
from mvae_cli.model.likelihoods import build_likelihoods
from mvae_cli.model.model import ExpertPosterior

C = 4
SPECS = [ModalitySpec("a", "image", "bernoulli", (C,)), ModalitySpec("b", "image", "bernoulli", (C,)),
         ModalitySpec("label", "categorical", "categorical", (), C)]


class Oracle(ExpertPosterior, nn.Module):
    """Each expert puts z at 8·onehot(class) (sharply); decoders put their modality's class at
    arg max z — shifted by ``shift`` for image ``b``."""

    def __init__(self, shift: int = 0):
        super().__init__()
        self.specs, self.names, self.latent_dim, self.shift = SPECS, [s.name for s in SPECS], C, shift
        self.likelihoods = build_likelihoods(SPECS, None)  # images drawn as σ(logits), the Bernoulli mean

    def encode(self, batch, mask):
        codes = [batch["a"], batch["b"], nn.functional.one_hot(batch["label"], C).float()]
        mu = 8.0 * torch.stack(codes, dim=1)
        return mu, torch.full_like(mu, -10.0)

    def decode(self, name, z):
        if name == "label":
            return z
        hot = nn.functional.one_hot(z.argmax(-1), C).float()
        if name == "b":
            hot = hot.roll(self.shift, dims=-1)
        return 20.0 * (hot - 0.5)


class Data:
    def __init__(self, n=60):
        g = torch.Generator().manual_seed(0)
        self.label = torch.randint(0, C, (n,), generator=g)
        self.n, self.device = n, torch.device("cpu")

    def batch(self, index):
        hot = nn.functional.one_hot(self.label[index], C).float()
        return {"a": hot, "b": hot, "label": self.label[index], "mask": torch.ones(len(index), 3, dtype=torch.bool)}


class PixelArgmax(nn.Module):
    def forward(self, x):
        return x


def test_coherence_of_a_model_that_decodes_the_true_class_is_one():
    classifiers = {"a": PixelArgmax(), "b": PixelArgmax()}
    result = coherence(Oracle(), Data(), classifiers, prior_samples=200, batch_size=25)
    assert result["cross"] == {t: {"1": 1.0, "2": 1.0} for t in ("a", "b", "label")}
    assert result["cross_by_size"] == {"1": 1.0, "2": 1.0} and result["joint"] == 1.0
    # b decoded as the next class: b is never right, the others always; joint never agrees
    result = coherence(Oracle(shift=1), Data(), classifiers, prior_samples=200, batch_size=25)
    assert result["cross"]["b"] == {"1": 0.0, "2": 0.0}
    assert result["cross"]["a"] == {"1": 1.0, "2": 1.0} and result["cross"]["label"] == {"1": 1.0, "2": 1.0}
    assert abs(result["cross_by_size"]["1"] - 2 / 3) < 1e-12 and result["joint"] == 0.0


def test_the_classifiers_learn_their_class_and_a_cache_of_an_older_kind_is_retrained(tmp_path):
    from mvae_cli.data.format import read_dataset
    from mvae_cli.engine.data import SplitData
    from mvae_cli.evaluate.coherence import CLASSIFIER_VERSION, Classifier, classifiers_path, load_or_train_classifiers
    from tests.helpers import make_dataset

    path = make_dataset(tmp_path / "blocks.h5")  # a bright block per class on noise, 1×8×8: the convolutional kind
    assert isinstance(Classifier((1, 8, 8), 4).net[0], nn.Sequential) and isinstance(Classifier((4,), 4).net[0], nn.Identity)
    with read_dataset(path) as data:
        train, test = SplitData(data, "train", "cpu", None, None), SplitData(data, "test", "cpu", None, None)
        models, accuracy = load_or_train_classifiers(path, train, test, data.specs, "cpu")
        assert accuracy["image"] >= 0.9  # chance is 0.25
        cache = torch.load(classifiers_path(path), weights_only=True)
        assert cache["key"]["version"] == CLASSIFIER_VERSION
        cache["key"]["version"] = CLASSIFIER_VERSION - 1  # written by an older mvae: retrained, not loaded
        cache["accuracy"]["image"] = -1.0
        torch.save(cache, classifiers_path(path))
        _, again = load_or_train_classifiers(path, train, test, data.specs, "cpu")
        assert again == accuracy


def test_evaluations_side_by_side_train_the_classifiers_once(tmp_path, monkeypatch):
    """A sweep's --jobs evaluating two runs of one data file at once: one trains, the other waits and loads."""
    import threading
    import time

    import mvae_cli.evaluate.coherence as coherence_module

    path = tmp_path / "d.h5"
    path.write_bytes(b"x" * 10)
    specs = [ModalitySpec("image", "image", "bernoulli", (4,)), ModalitySpec("label", "categorical", "categorical", (), 3)]
    calls, accuracies = [], []
    started = threading.Barrier(2)

    def train(train, test, specs):
        calls.append(1)
        time.sleep(0.3)  # the other evaluation reaches the empty cache meanwhile
        return {"state": {}, "accuracy": {"image": 0.9 + len(calls) / 100}}

    monkeypatch.setattr(coherence_module, "train_classifiers", train)

    def evaluate():
        started.wait()
        accuracies.append(coherence_module.load_or_train_classifiers(path, None, None, specs, "cpu")[1])

    threads = [threading.Thread(target=evaluate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and accuracies == [{"image": 0.91}] * 2
