"""The estimator scores each modality in the likelihood the recipe chose: the Bernoulli and categorical
forms that never copy x per particle for those two, the general path (``log_prob`` per row) for every
other one, with or without the fused CPU decoders."""

import math

import pytest
import torch

from mvae_cli.data.format import ModalitySpec
from mvae_cli.evaluate.estimator import log_importance_weights, log_prior_predictive, particle_noise
from mvae_cli.evaluate.scorers import likelihood_of, scorers
from mvae_cli.model.model import MultimodalVAE
from mvae_cli.model.poe import product_of_experts

SPECS = [ModalitySpec("image", "image", "bernoulli", (1, 4, 4)),
         ModalitySpec("label", "categorical", "categorical", (), 3)]
CHOICES = ["continuous-bernoulli", "gaussian:0.2", "gaussian:learned", "laplace:learned-per-dim", "laplace"]


def _model(choice: str) -> MultimodalVAE:
    torch.manual_seed(0)
    model = MultimodalVAE(SPECS, latent_dim=2, hidden=8, likelihoods={"image": choice})
    for likelihood in model.likelihoods.values():
        for p in likelihood.parameters():  # a learned scale trained away from its start, per pixel if so
            p.data.uniform_(-2.5, -1.0)
    return model.eval()


def _image_log_prob_by_hand(model, choice: str, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | logits) ``[R]`` from the textbook formulas in float64, not the library's."""
    logits, x = logits.double(), x.double()
    lam = torch.sigmoid(logits)
    if choice == "continuous-bernoulli":
        # Loaiza-Ganem & Cunningham (2019), Eq. 7, λ away from ½ here; C(½) = 2
        c = torch.where((lam - 0.5).abs() > 1e-6, 2 * torch.atanh(1 - 2 * lam) / (1 - 2 * lam), torch.full_like(lam, 2.0))
        ll = x * torch.log(lam) + (1 - x) * torch.log1p(-lam) + torch.log(c)
    else:
        scale = model.likelihoods["image"].scale()
        scale = torch.as_tensor(scale, dtype=torch.float64) if isinstance(scale, float) else scale.detach().double()
        dist = torch.distributions.Normal if choice.startswith("gaussian") else torch.distributions.Laplace
        ll = dist(lam, scale).log_prob(x)
    return ll.flatten(1).sum(dim=1)


@pytest.mark.parametrize("accel", ["0", "1"])
@pytest.mark.parametrize("choice", CHOICES)
def test_other_likelihoods_take_the_general_path_and_the_weights_use_them(choice, accel, monkeypatch):
    monkeypatch.setenv("MVAE_ACCEL", accel)
    model = _model(choice)
    assert likelihood_of(model, "image").copies_x
    assert not likelihood_of(model, "label").copies_x
    built = scorers(model, ["image", "label"], "cpu", rows_hint=64)
    g = torch.Generator().manual_seed(1)
    batch = {"image": torch.rand(5, 1, 4, 4, generator=g), "label": torch.tensor([0, 2, 1, 1, 0])}
    K, seed = 7, 3
    log_w = log_importance_weights(model, batch, [["image"]], [["image"], ["image", "label"]], K, seed=seed,
                                   chunk_rows=11, scorers=built, workers=2)  # [1, 2, B, K]
    with torch.no_grad():
        mu, logvar = model.encode(batch, torch.ones(5, 2, dtype=torch.bool))
        q_mu, q_logvar = product_of_experts(mu, logvar, torch.tensor([True, False]).expand(5, 2))
        for b in range(5):
            eps = particle_noise(seed, b, K, 2)
            z = q_mu[b] + torch.exp(0.5 * q_logvar[b]) * eps  # [K, D]
            q = torch.distributions.Normal(q_mu[b], torch.exp(0.5 * q_logvar[b])).log_prob(z).sum(-1)
            prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
            image = _image_log_prob_by_hand(model, choice, model.decode("image", z), batch["image"][b].expand(K, 1, 4, 4))
            label = torch.log_softmax(model.decode("label", z), -1)[:, batch["label"][b]]
            torch.testing.assert_close(log_w[0, 0, b].double(), image + prior - q, rtol=1e-5, atol=1e-3)
            torch.testing.assert_close(log_w[0, 1, b].double(), image + label + prior - q, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("choice", ["continuous-bernoulli", "laplace:learned"])
def test_prior_predictive_of_an_image_uses_the_chosen_likelihood(choice):
    model = _model(choice)
    g = torch.Generator().manual_seed(2)
    batch = {"image": torch.rand(4, 1, 4, 4, generator=g)}
    z_prior = torch.randn(9, 2, generator=g)
    got = log_prior_predictive(model, batch, ["image"], z_prior, chunk_rows=20)  # [B, S]
    with torch.no_grad():
        logits = model.decode("image", z_prior)
        for b in range(4):
            expected = _image_log_prob_by_hand(model, choice, logits, batch["image"][b].expand(9, 1, 4, 4))
            torch.testing.assert_close(got[b].double(), expected, rtol=1e-5, atol=1e-3)
    assert math.isfinite(float(got.sum()))
