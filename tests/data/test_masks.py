"""Weak-supervision masks: exact counts, nesting, the even deal, the keep-prob rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mvae_cli.data.masks import build_mask, keep_prob_mask, mask_name, supervision_mask


def _paired(mask: np.ndarray) -> np.ndarray:
    return mask.all(axis=1)


def test_supervision_counts_and_nesting_on_the_mnist_training_set():
    n, m = 50_000, 2
    masks = {f: supervision_mask(n, m, f, seed=0) for f in (0.001, 0.01, 0.1, 1.0)}
    assert [int(_paired(masks[f]).sum()) for f in masks] == [50, 500, 5_000, 50_000]
    # Everyone else shows exactly one modality, split evenly between image and label.
    assert masks[0.01].sum(axis=0).tolist() == [500 + 24_750, 500 + 24_750]
    assert masks[0.1].sum(axis=0).tolist() == [5_000 + 22_500, 5_000 + 22_500]
    # The 1% paired set lies inside the 10% one, which lies inside 100%.
    for small, large in ((0.001, 0.01), (0.01, 0.1), (0.1, 1.0)):
        assert np.all(_paired(masks[large])[_paired(masks[small])])


@pytest.mark.parametrize("n, m, f", [(1003, 6, 0.1), (20_000, 6, 0.001), (7, 3, 0.0), (11, 2, 0.5), (5, 6, 0.2)])
def test_remainder_is_dealt_evenly(n, m, f):
    mask = supervision_mask(n, m, f, seed=3)
    shown = mask.sum(axis=1)
    n_paired = math.floor(f * n + 0.5)
    assert int((shown == m).sum()) == n_paired
    assert int((shown == 1).sum()) == n - n_paired  # no empty rows, no partial rows
    groups = mask[shown == 1].sum(axis=0)
    assert groups.sum() == n - n_paired
    assert groups.max() - groups.min() <= 1


def test_exact_group_sizes():
    # 1003 - 100 = 903 = 6 * 150 + 3: three groups of 151, three of 150.
    groups = supervision_mask(1003, 6, 0.1, seed=0)
    groups = groups[groups.sum(axis=1) == 1].sum(axis=0)
    assert sorted(groups.tolist()) == [150, 150, 150, 151, 151, 151]


def test_round_half_up():
    assert int(supervision_mask(5, 2, 0.5, seed=0).all(axis=1).sum()) == 3
    assert int(supervision_mask(10, 2, 0.05, seed=0).all(axis=1).sum()) == 1


def test_supervision_is_seeded():
    a, b, c = (supervision_mask(1000, 3, 0.1, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_prob_rate_within_four_standard_errors(p):
    n, m = 20_000, 6
    mask = keep_prob_mask(n, m, p, seed=0)
    per_column = mask.mean(axis=0)
    se = math.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(per_column - p) < 4 * se)
    # Independence: a pair of modalities is kept together at rate p^2, and a row is
    # empty at rate (1 - p)^M.
    both = (mask[:, 0] & mask[:, 1]).mean()
    assert abs(both - p * p) < 4 * math.sqrt(p * p * (1 - p * p) / n)
    q = (1 - p) ** m
    assert abs((~mask.any(axis=1)).mean() - q) < 4 * math.sqrt(q * (1 - q) / n) + 1e-12


def test_keep_prob_one_keeps_everything():
    assert keep_prob_mask(100, 4, 1.0, seed=0).all()


@pytest.mark.parametrize("f", [-0.01, 1.01, float("nan"), float("inf")])
def test_supervision_out_of_range(f):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        supervision_mask(10, 2, f, seed=0)


@pytest.mark.parametrize("p", [0.0, -0.5, 1.5, float("nan")])
def test_keep_prob_out_of_range(p):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        keep_prob_mask(10, 2, p, seed=0)


def test_names_and_dispatch():
    assert mask_name("supervision", 0.01, 0) == "supervision=0.01,seed=0"
    assert mask_name("keep_prob", 0.5, 3) == "keep_prob=0.5,seed=3"
    np.testing.assert_array_equal(build_mask("supervision", 0.1, 50, 2, 4), supervision_mask(50, 2, 0.1, 4))
    np.testing.assert_array_equal(build_mask("keep_prob", 0.3, 50, 2, 4), keep_prob_mask(50, 2, 0.3, 4))
