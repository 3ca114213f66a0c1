"""Classifiers trained together (one stack) end exactly as each trained alone: same accuracy, same parameters."""

import numpy as np
import pytest
import torch

from mvae_cli.data.format import ModalitySpec
from mvae_cli.evaluate import paired_train
from mvae_cli.evaluate.baseline import paired_baselines, paired_rows
from mvae_cli.evaluate.paired_train import accuracy, most_rounds, train_paired_classifier, train_paired_classifiers

X = ModalitySpec("image", "image", "bernoulli", (1, 6, 6))
YS = [ModalitySpec("a", "categorical", "categorical", (), 3), ModalitySpec("b", "categorical", "categorical", (), 2),
      ModalitySpec("c", "binary", "bernoulli", (4,)), ModalitySpec("d", "categorical", "categorical", (), 5)]
SPECS = [X, *YS]


def _split(n, seed):
    """Labels readable from the image in varying degrees (``d`` is noise: it stops early)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 1, 6, 6, generator=g)
    flat = image.reshape(n, -1)
    return {"image": image, "a": (flat[:, :3].argmax(1) + (torch.rand(n, generator=g) < 0.2)) % 3,
            "b": (flat[:, 5] > 0.5).long(), "c": (flat[:, 10:14] > 0.6).float(),
            "d": torch.randint(0, 5, (n,), generator=g)}


def _batches(split):
    return lambda rows: {name: tensor[rows] for name, tensor in split.items()}


SETTINGS = dict(latent_dim=3, hidden=8, image_net="mlp", seed=3, device="cpu")


def _assert_same(alone, together):
    for one, other in zip(alone, together):
        one_state, other_state = one.state_dict(), other.state_dict()
        assert one_state.keys() == other_state.keys()
        for name in one_state:
            torch.testing.assert_close(other_state[name], one_state[name], rtol=0, atol=1e-5)


def test_a_stack_ends_as_each_classifier_alone_including_one_that_stops_early(monkeypatch):
    monkeypatch.setattr(paired_train, "PATIENCE", 3)  # short runs that stop at different rounds (4 and 23)
    monkeypatch.setattr(paired_train, "ROUND_EXAMPLES", 2000)
    train, valid = _split(300, 0), _split(200, 1)
    rows = np.arange(0, 300, 2)  # 150 rows: batches of 100 and 50
    rounds = {}
    real = paired_train.accuracy

    def counted(model, batches, n, x, y, device):  # the validation rounds of each classifier alone
        rounds[y] = rounds.get(y, 0) + 1
        return real(model, batches, n, x, y, device)

    monkeypatch.setattr(paired_train, "accuracy", counted)
    alone = [train_paired_classifier(X, y, _batches(train), rows, _batches(valid), 200, **SETTINGS) for y in YS]
    monkeypatch.setattr(paired_train, "accuracy", real)
    assert len(set(rounds.values())) > 1 and min(rounds.values()) < most_rounds(rows.size)  # stops differ
    reported = []
    together = train_paired_classifiers(X, YS, _batches(train), rows, _batches(valid), 200,
                                        progress=lambda done, total: reported.append((done, total)), **SETTINGS)
    assert not any(model.training for model in together)
    _assert_same(alone, together)
    for y, one, other in zip(YS, alone, together):
        assert accuracy(one, _batches(valid), 200, "image", y.name, "cpu") == \
            accuracy(other, _batches(valid), 200, "image", y.name, "cpu")
    assert reported[-1] == (most_rounds(rows.size),) * 2 and len(reported) == max(rounds.values())


def test_the_baselines_of_attributes_with_different_paired_rows_equal_the_one_at_a_time_ones():
    train, valid, test = _split(400, 2), _split(200, 3), _split(300, 4)
    g = np.random.default_rng(0)
    mask = g.random((400, len(SPECS))) < 0.7  # keep-prob masks: every attribute its own paired rows...
    mask[:, 2] = mask[:, 1]  # ... but b's are a's: they train together
    mask[:, 0] = True
    result = paired_baselines(SPECS, "image", [y.name for y in YS], mask, _batches(train), _batches(valid), 200,
                              _batches(test), 300, **SETTINGS)
    for column, y in enumerate(YS, start=1):
        rows = paired_rows(mask, 0, column)
        alone = train_paired_classifier(X, y, _batches(train), rows, _batches(valid), 200, **SETTINGS)
        assert result["baseline"][y.name] == accuracy(alone, _batches(test), 300, "image", y.name, "cpu")
        assert result["baseline_rows"][y.name] == rows.size
    assert list(result["baseline"]) == ["a", "b", "c", "d", "mean"]
    assert result["baseline"]["mean"] == pytest.approx(np.mean([result["baseline"][y.name] for y in YS]), abs=1e-15)


def test_an_encoder_that_is_not_a_plain_mlp_is_trained_one_at_a_time():
    binary_x = ModalitySpec("bits", "binary", "bernoulli", (6,))  # its encoder has batch normalisation
    g = torch.Generator().manual_seed(5)
    bits = (torch.rand(200, 6, generator=g) > 0.5).float()
    split = {"bits": bits, "a": bits[:, :2].sum(1).long(), "b": bits[:, 3].long()}
    rows = np.arange(120)
    together = train_paired_classifiers(binary_x, YS[:2], _batches(split), rows, _batches(split), 200, **SETTINGS)
    alone = [train_paired_classifier(binary_x, y, _batches(split), rows, _batches(split), 200, **SETTINGS)
             for y in YS[:2]]
    _assert_same(alone, together)
    assert paired_train._mlp_layers(together[0]) is None


def test_groups_of_other_rows_and_seeds_trained_as_one_stack_end_as_each_alone(monkeypatch):
    from mvae_cli.evaluate.paired_train import train_classifier_groups

    monkeypatch.setattr(paired_train, "PATIENCE", 3)
    monkeypatch.setattr(paired_train, "ROUND_EXAMPLES", 2000)
    train, valid = _split(300, 0), _split(200, 1)
    first, second = np.arange(0, 300, 2), np.arange(1, 300, 2)  # two runs' paired rows, 150 each
    settings = {k: v for k, v in SETTINGS.items() if k != "seed"}
    groups = [(YS[:2], first, 3), (YS[1:], second, 8)]
    reported = []
    together = train_classifier_groups(X, groups, _batches(train), _batches(valid), 200,
                                       progress=lambda done, total: reported.append(done), **settings)
    assert reported and not any(m.training for ms in together for m in ms)
    for (ys, rows, seed), models in zip(groups, together):
        alone = train_paired_classifiers(X, ys, _batches(train), rows, _batches(valid), 200, seed=seed, **settings)
        _assert_same(alone, models)
        for y, one, other in zip(ys, alone, models):
            assert accuracy(one, _batches(valid), 200, "image", y.name, "cpu") == \
                accuracy(other, _batches(valid), 200, "image", y.name, "cpu")
    with pytest.raises(ValueError, match="as many rows"):
        train_classifier_groups(X, [(YS[:1], first, 3), (YS[:1], first[:10], 3)], _batches(train),
                                _batches(valid), 200, **settings)
