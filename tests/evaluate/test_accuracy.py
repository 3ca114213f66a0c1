"""Accuracy of binary and sequence modalities, and likelihoods of sequence targets (docs/eval.md)."""

import json
import math

import numpy as np
import pytest
import torch

from mvae_cli.data.format import ModalitySpec, read_dataset, write_dataset
from mvae_cli.engine.data import SplitData
from mvae_cli.eval_config import EvalConfig
from mvae_cli.evaluate.accuracy import AccuracyTally, attribute_names, sequence_agreement
from mvae_cli.evaluate.estimator import bytes_per_row, log_importance_weights, log_prior_predictive
from mvae_cli.evaluate.model_eval import evaluate_model
from mvae_cli.evaluate.plan import plan_evaluation
from mvae_cli.evaluate.scorers import particle_log_prob, shared_log_prob
from mvae_cli.model.model import MultimodalVAE
from tests.evaluate.models import PerfectPredictor

START, STOP = 4, 5  # PerfectPredictor's vocabulary of 6: digits 0-3, START, STOP


def _row(digits: str, width: int = 5) -> list[int]:
    return [START, *map(int, digits), *[STOP] * (width - 1 - len(digits))]


def _rows(*texts: str) -> torch.Tensor:
    return torch.tensor([_row(t) for t in texts])


def test_a_decode_with_one_wrong_character_scores_the_other_characters():
    true = _rows("302", "302", "302", "302", "", "1")
    decoded = _rows("312", "3021", "30", "302", "", "")
    exact, right, positions = sequence_agreement(decoded, true, STOP)
    assert exact.tolist() == [False, False, False, True, True, False]
    assert right.tolist() == [2, 3, 2, 3, 0, 0]
    assert positions.tolist() == [3, 4, 3, 3, 0, 1]  # the longer string's length
    # a row without STOP is a string of the whole width after START
    exact, right, positions = sequence_agreement(torch.tensor([[START, 1, 2, 3, 0]]), _rows("123"), STOP)
    assert (exact.item(), right.item(), positions.item()) == (False, 3, 4)


def test_the_tally_pools_characters_over_examples():
    spec = ModalitySpec("text", "sequence", "categorical", (5,), 6)

    class Fixed:  # decodes a fixed set of rows, whatever z
        decoders = {"text": type("G", (), {"generate": staticmethod(lambda state: _rows("312", "3021", "", "2"))})}

        def decode(self, name, z):
            return z

    tally = AccuracyTally([spec], ["text"])
    tally.add(Fixed(), {"text": _rows("302", "302", "", "2")}, torch.zeros(4, 2))
    # right characters 2 + 3 + 0 + 1 over positions 3 + 4 + 0 + 1; exact matches: "" and "2"
    assert tally.result() == {"text": 0.5, "text/char": pytest.approx(6 / 8), "mean": 0.5}


def _dataset(path, model, n=40, wrong_flags=0, wrong_chars=0):
    """Examples whose image spells them out, except ``wrong_flags`` flipped flag bits and
    ``wrong_chars`` texts whose first character the image gets wrong."""
    rng = np.random.default_rng(0)
    attrs = rng.integers(0, 2, (n, model.A)).astype(np.uint8)
    flag = rng.integers(0, 2, (n, 1)).astype(np.uint8)
    text = np.array([_row("".join(map(str, rng.integers(0, 4, k)))) for k in rng.integers(1, 4, n)], dtype=np.uint8)
    shown_flag, shown_text = flag.copy(), text.copy()
    shown_flag[:wrong_flags] ^= 1
    shown_text[:wrong_chars, 1] = (shown_text[:wrong_chars, 1] + 1) % 4
    arrays = {"image": model.image_of(attrs, shown_flag, shown_text), "attrs": attrs, "flag": flag, "text": text}
    write_dataset(path, "spelled", model.specs, {s: arrays for s in ("train", "valid", "test")}, seed=0)
    lengths = (text[:, 1:] != STOP).sum(axis=1)
    return path, lengths


def _evaluate(path, model, **options):
    with read_dataset(path) as dataset:
        data = SplitData(dataset, "test", torch.device("cpu"))
        return evaluate_model(model, data, plan_evaluation(model, "image", ["attrs", "flag", "text"]),
                              EvalConfig(particles=5, prior_samples=7), budget_bytes=1 << 20, batch_size=16, **options)


def test_a_model_built_to_predict_perfectly_scores_one_for_binary_and_sequence(tmp_path):
    model = PerfectPredictor()
    path, _ = _dataset(tmp_path / "spelled.h5", model)
    result = _evaluate(path, model, attributes={"attrs": ["red", "big", "round"]})
    assert result["accuracy"] == {"attrs": 1.0, "attrs/red": 1.0, "attrs/big": 1.0, "attrs/round": 1.0,
                                  "flag": 1.0, "text": 1.0, "text/char": 1.0, "mean": 1.0}
    for family in ("log_px", "log_pxy", "log_px_given_y"):  # sequence and binary targets are scored too
        assert all(math.isfinite(v["mean"]) for v in result[family].values())


def test_wrong_predictions_give_the_expected_fractions(tmp_path):
    model = PerfectPredictor()
    path, lengths = _dataset(tmp_path / "spelled.h5", model, n=40, wrong_flags=10, wrong_chars=8)
    accuracy = _evaluate(path, model)["accuracy"]
    assert list(accuracy) == ["attrs", "attrs/0", "attrs/1", "attrs/2", "flag", "text", "text/char", "mean"]
    assert accuracy["flag"] == 30 / 40
    assert accuracy["text"] == 32 / 40
    assert accuracy["text/char"] == pytest.approx(1 - 8 / lengths.sum())
    # the mean is over the five attribute figures (3 + 1) and the text's exact match
    assert accuracy["mean"] == pytest.approx((3 + 0.75 + 0.8) / 5)


def test_attribute_names_come_from_the_file_when_they_fit():
    specs = [ModalitySpec("image", "image", "bernoulli", (1, 2, 2)),
             ModalitySpec("attributes", "binary", "bernoulli", (3,)),
             ModalitySpec("smiling", "binary", "bernoulli", (1,))]
    named = {"attribute_names": json.dumps({"attributes": ["Bald", "Bangs", "Male"]})}
    assert attribute_names(named, specs) == {"attributes": ["Bald", "Bangs", "Male"], "smiling": ["0"]}
    for attrs in ({}, {"attribute_names": json.dumps({"attributes": ["Bald"]})}, {"attribute_names": "{oops"}):
        assert attribute_names(attrs, specs)["attributes"] == ["0", "1", "2"]


def _text_model():
    torch.manual_seed(0)
    specs = [ModalitySpec("image", "image", "bernoulli", (1, 4, 4)),
             ModalitySpec("text", "sequence", "categorical", (5,), 6),
             ModalitySpec("attrs", "binary", "bernoulli", (3,))]
    return MultimodalVAE(specs, latent_dim=3, hidden=8).eval()


def test_sequence_likelihoods_go_through_the_decoders_own_log_prob():
    model = _text_model()
    tokens = _rows("302", "1", "")
    z = torch.randn(3, 4, 3)
    params = model.decode("text", z.flatten(0, 1))
    plain = model.log_prob("text", params, tokens.repeat_interleave(4, dim=0)).view(3, 4)
    torch.testing.assert_close(particle_log_prob(model, "text", params.view(3, 4, *params.shape[1:]), tokens), plain)
    # one set of prior samples shared by every example: [B, S]
    shared = shared_log_prob(model, "text", params[:5], tokens)
    expected = torch.stack([model.log_prob("text", params[:5], row.expand(5, -1)) for row in tokens])
    torch.testing.assert_close(shared, expected)
    # the teacher-forced pass is counted in the memory of a row: far more than the GRU state it starts from
    assert bytes_per_row(model, ["text"]) > 4 * 2 * (4 * 200 + 2 * 200)


def test_sequence_and_binary_targets_do_not_depend_on_the_chunk_size():
    model = _text_model()
    batch = {"image": torch.rand(4, 1, 4, 4), "text": _rows("302", "1", "", "33"),
             "attrs": torch.randint(0, 2, (4, 3)).float()}
    proposals = [["image"], ["image", "text", "attrs"]]
    runs = [log_importance_weights(model, batch, proposals, proposals, 6, seed=1, chunk_rows=rows, workers=1)
            for rows in (5, 1000)]
    torch.testing.assert_close(runs[0], runs[1])
    assert bool(torch.isfinite(runs[0]).all())
    z_prior = torch.randn(9, 3)
    prior = [log_prior_predictive(model, batch, ["text", "attrs"], z_prior, chunk_rows=rows) for rows in (3, 1000)]
    torch.testing.assert_close(prior[0], prior[1])
    text = model.decode("text", z_prior)
    expected = torch.stack([model.log_prob("text", text, row.expand(9, -1)) for row in batch["text"]])
    attrs = model.decode("attrs", z_prior)
    expected += torch.stack([model.log_prob("attrs", attrs, row.expand(9, -1)) for row in batch["attrs"]])
    torch.testing.assert_close(prior[0], expected)
