"""The linear probe on separable data, on data with a known Bayes accuracy, and on noise."""

import math

import pytest
import torch

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
