"""Dynamic binarisation (recipe ``data.binarize``): pixel means, seeding, and the fixed valid/test draws."""

import pytest
import torch

from mvae_cli.data.format import read_dataset
from mvae_cli.engine.data import SplitData, binarized_modalities, dynamic_binarize, fixed_binarize
from mvae_cli.errors import UserError
from mvae_cli.model.model import MultimodalVAE
from tests.helpers import IMAGE_LABEL, make_dataset

LEVELS = torch.arange(16) / 15  # 0, 1/15, …, 1: one grey level per pixel of a 1×4×4 image


def _assert_means_within_se(draws: torch.Tensor, p: torch.Tensor) -> None:
    """Per-pixel means of ``draws [N, ...]`` within 4 standard errors of ``p``; exact at 0 and 1."""
    n = draws.shape[0]
    mean = draws.float().mean(dim=0)
    se = torch.sqrt(p * (1 - p) / n)
    assert bool((torch.isin(draws.unique(), torch.tensor([0.0, 1.0]))).all())
    assert bool(((mean - p).abs() <= 4 * se).all()), (mean - p).abs().max()
    assert float(mean[p == 0].sum()) == 0.0 and bool((mean[p == 1] == 1).all())
    # and not a degenerate draw: the middle grey levels do vary
    assert float(se.max()) > 0 and float((mean - p).abs().max()) > 0


def test_dynamic_batch_means_match_the_pixel_intensities_and_draws_are_seeded():
    p = LEVELS.view(1, 4, 4)
    batch = {"image": p.expand(4000, 1, 4, 4).clone(), "label": torch.zeros(4000, dtype=torch.long),
             "mask": torch.ones(4000, 2, dtype=torch.bool)}
    out = dynamic_binarize(batch, ["image"], seed=3, step=11)
    _assert_means_within_se(out["image"], p)
    assert out["label"] is batch["label"] and out["mask"] is batch["mask"]
    assert torch.equal(batch["image"][0], p)  # the batch itself is left as it was
    again = dynamic_binarize(batch, ["image"], seed=3, step=11)["image"]
    assert torch.equal(again, out["image"])  # same seed and step: the same pixels (what resume needs)
    for seed, step in ((3, 12), (4, 11)):
        assert not torch.equal(dynamic_binarize(batch, ["image"], seed=seed, step=step)["image"], out["image"])


def test_fixed_draws_are_per_row_whatever_the_batch_and_their_means_match():
    levels = (LEVELS * 255).round().to(torch.uint8).view(1, 1, 4, 4)
    pixels = levels.expand(3000, 1, 4, 4).clone()
    whole = fixed_binarize(pixels, torch.arange(3000))
    assert whole.dtype == torch.uint8 and set(whole.unique().tolist()) == {0, 255}
    _assert_means_within_se(whole.float() / 255, levels.view(1, 4, 4).float() / 255)
    rows = torch.tensor([2999, 5, 17])
    assert torch.equal(fixed_binarize(pixels[rows], rows), whole[rows])
    assert len({tuple(row.flatten().tolist()) for row in whole[:50]}) > 40  # each row its own draw


def test_split_data_binarises_valid_and_test_once_the_same_on_device_and_streamed(tmp_path):
    path = make_dataset(tmp_path / "tiny.h5")
    with read_dataset(path) as ds:
        whole = SplitData(ds, "valid", torch.device("cpu"), budget_bytes=None, binarize=["image"])
        streamed = SplitData(ds, "valid", torch.device("cpu"), budget_bytes=1, binarize=["image"])
        plain = SplitData(ds, "valid", torch.device("cpu"))
        index = torch.tensor([40, 3, 17])
        a, b, grey = whole.batch(index), streamed.batch(index), plain.batch(index)
        order = index.argsort()
        assert torch.equal(a["image"][order], b["image"]) and torch.equal(a["label"], grey["label"])
        assert set(a["image"].unique().tolist()) == {0.0, 1.0}
        assert torch.equal(whole.batch(index)["image"], a["image"])  # drawn once, not per batch
        # pixels stored as 0 stay 0, as 255 stay 1
        assert bool((a["image"][grey["image"] == 0] == 0).all()) and bool((a["image"][grey["image"] == 1] == 1).all())


def test_binarisation_needs_the_bernoulli_likelihood_on_every_image_modality():
    model = MultimodalVAE(IMAGE_LABEL, 2, 4)
    assert binarized_modalities(True, model) == ["image"] and binarized_modalities(False, model) == []
    model = MultimodalVAE(IMAGE_LABEL, 2, 4, likelihoods={"image": "continuous-bernoulli"})
    with pytest.raises(UserError, match=r"'data.binarize' .* 'model.likelihoods.image' must be bernoulli, "
                                        r"got 'continuous-bernoulli'"):
        binarized_modalities(True, model)
