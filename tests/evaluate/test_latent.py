"""Active units, KL per unit and I(x; z) against closed forms."""

import math

import pytest
import torch

from mvae_cli.data.format import ModalitySpec
from mvae_cli.evaluate.accuracy import posterior_mean
from mvae_cli.evaluate.latent import active_units, kl_summary, latent_report, mutual_information, unit_activity
from mvae_cli.model.model import MultimodalVAE
from mvae_cli.model.poe import product_of_experts

SPECS = [ModalitySpec("image", "image", "bernoulli", (1, 6, 6)), ModalitySpec("label", "categorical", "categorical", (), 3)]


def test_a_dead_unit_of_a_real_encoder_is_inactive_with_the_closed_form_kl():
    torch.manual_seed(0)
    model = MultimodalVAE(SPECS, latent_dim=4, hidden=32)
    last = model.encoders["image"].net[-1]  # Linear(hidden, 2D): rows 0..D-1 are mu, D..2D-1 logvar
    with torch.no_grad():
        for row in (2, 4 + 2):  # unit 2 ignores its input: expert N(0, 1)
            last.weight[row].zero_()
            last.bias[row] = 0.0
        last.weight[:4] *= 20  # the other units carry the input strongly
    x = torch.rand(500, 1, 6, 6)
    batch, mask = {"image": x, "label": torch.zeros(500, dtype=torch.long)}, torch.tensor([[True, False]]).expand(500, 2)
    mu, logvar = product_of_experts(*model.encode(batch, mask), mask)  # q(z | image), prior expert included
    assert torch.equal(mu, posterior_mean(model, model.encode(batch, mask), ["image"]))
    activity = unit_activity(mu)
    assert activity[2] == 0.0 and bool((activity[[0, 1, 3]] > 0.01).all())
    assert active_units(mu) == 3
    # The dead unit's posterior is N(0, 1/2) (expert N(0, 1) times the prior): KL = ½(½ − 1 + ln 2).
    kl = kl_summary(mu, logvar)
    assert kl["kl_per_unit"][2] == pytest.approx(0.5 * (0.5 - 1 + math.log(2)), abs=1e-7)
    assert kl["kl"] == pytest.approx(sum(kl["kl_per_unit"]), rel=1e-12)
    report = latent_report(mu, logvar)
    assert report["active_units"] == 3 and report["latent_dim"] == 4


def test_kl_summary_matches_hand_numbers():
    mu = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, math.log(2.0)]])
    kl = kl_summary(mu, logvar)
    assert kl["kl_per_unit"] == pytest.approx([0.5 * (1 + 9) / 2, 0.5 * (2 - 1 - math.log(2))])
    assert active_units(mu) == 1  # unit 0 varies (variance 2), unit 1 not at all


@pytest.mark.parametrize("a", [1.0, 0.5])
def test_mutual_information_of_a_linear_gaussian_encoder(a):
    # x ~ N(0, I_2), q(z | x) = N(a x, σ² I): I(x; z) = 2 · ½ ln(1 + a²/σ²).
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4000, 2, generator=g, dtype=torch.float64)
    sigma2 = 0.25
    mu, logvar = a * x, torch.full_like(x, math.log(sigma2))
    exact = math.log(1 + a * a / sigma2)
    assert mutual_information(mu, logvar, seed=0) == pytest.approx(exact, abs=0.04)


def test_mutual_information_of_an_encoder_that_ignores_its_input_is_zero():
    mu, logvar = torch.zeros(1000, 3), torch.full((1000, 3), -1.0)
    assert mutual_information(mu, logvar) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError):
        unit_activity(mu[:1])
