"""The Laplace posterior family (the MMVAE's option) against torch.distributions' closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Laplace, Normal, kl_divergence

from mvae_cli.data.format import ModalitySpec
from mvae_cli.model.fusion import mixture_of_experts
from mvae_cli.model.posterior import DiagonalGaussian, DiagonalLaplace, Mixture
from mvae_cli.zoo import build

G = torch.Generator().manual_seed(3)
MU = torch.randn(4, 3, generator=G, dtype=torch.float64)
LOGVAR = torch.randn(4, 3, generator=G, dtype=torch.float64)
B = torch.exp(0.5 * LOGVAR) / math.sqrt(2)  # variance 2b² = exp(logvar)


def test_laplace_density_scale_and_variance():
    q = DiagonalLaplace(MU, LOGVAR)
    z = torch.randn(4, 5, 3, generator=G, dtype=torch.float64)
    expected = Laplace(MU.unsqueeze(1), B.unsqueeze(1)).log_prob(z).sum(-1)
    torch.testing.assert_close(q.log_prob(z), expected)
    torch.testing.assert_close(Laplace(MU, B).variance, LOGVAR.exp())  # same parameters, same variance as the Gaussian
    torch.testing.assert_close(torch.exp(0.5 * q.logvar), Laplace(MU, B).stddev)


def test_normal_noise_becomes_laplace_noise_by_the_inverse_cdfs():
    eps = torch.linspace(-6, 6, 101, dtype=torch.float64)
    expected = Laplace(0.0, 1.0).icdf(Normal(0.0, 1.0).cdf(eps))
    torch.testing.assert_close(DiagonalLaplace.noise(eps), expected, rtol=1e-6, atol=1e-9)  # the reference loses digits near Φ = 1
    far = DiagonalLaplace.noise(torch.tensor([-40.0, 40.0], dtype=torch.float64))
    assert torch.isfinite(far).all() and far[0] < -800 and far[1] > 800  # log Φ keeps the tails finite
    # draws: mean |noise| = b = 1 and variance 2b² = 2, within 4 standard errors
    x = DiagonalLaplace.noise(torch.randn(200_000, generator=G, dtype=torch.float64))
    assert abs(x.abs().mean() - 1.0) < 4 * x.abs().std() / math.sqrt(x.numel())
    assert abs(x.var() - 2.0) < 4 * math.sqrt((x.pow(4).mean() - 4.0) / x.numel())


def test_laplace_kl_to_its_prior_in_closed_form():
    expected = kl_divergence(Laplace(MU, B), Laplace(torch.zeros_like(MU), torch.ones_like(MU))).sum(-1)
    torch.testing.assert_close(DiagonalLaplace(MU, LOGVAR).kl_to_prior(), expected)
    torch.testing.assert_close(DiagonalLaplace.prior_log_prob(MU), Laplace(0.0, 1.0).log_prob(MU).sum(-1))


def test_a_mixture_of_laplace_experts_against_a_brute_force_sum():
    mu, logvar = MU.view(2, 2, 3), LOGVAR.view(2, 2, 3)
    mask = torch.tensor([[True, True], [True, False]])
    q = mixture_of_experts(mu, logvar, mask, family=DiagonalLaplace)
    assert isinstance(q, Mixture) and isinstance(q.components, DiagonalLaplace)
    z = torch.randn(2, 7, 3, generator=G, dtype=torch.float64)
    b = torch.exp(0.5 * logvar) / math.sqrt(2)
    for row, weights in ((0, (0.5, 0.5)), (1, (1.0, 0.0))):
        density = sum(w * Laplace(mu[row, c], b[row, c]).log_prob(z[row]).sum(-1).exp()
                      for c, w in enumerate(weights))
        torch.testing.assert_close(q.log_prob(z)[row], density.log())
    # the stratified Monte Carlo KL is unbiased: over many particles it nears E_q[log q − log p]
    eps = torch.randn(2, 40_000, 3, generator=G, dtype=torch.float64)
    draws = q.rsample(eps, 0, eps.shape[1])
    mc = (q.log_prob(draws) - DiagonalLaplace.prior_log_prob(draws))  # [2, K]
    kl = q.kl_to_prior(eps)
    exact = DiagonalLaplace(mu[1, 0], logvar[1, 0]).kl_to_prior()  # one component: the closed form
    assert abs(kl[1] - exact) < 4 * mc[1].std() / math.sqrt(eps.shape[1])
    assert abs(kl[0] - mc[0].mean()) < 1e-9 + 4 * mc[0].std() / math.sqrt(eps.shape[1])


def test_the_laplace_family_goes_with_the_mmvae_only():
    specs = [ModalitySpec("image", "image", "bernoulli", (1, 2, 2)), ModalitySpec("label", "categorical", "categorical", (), 3)]
    model = build("mmvae", specs, latent_dim=2, hidden=4, posterior="laplace")
    assert model.family is DiagonalLaplace and build("mmvae", specs, 2, 4).family is DiagonalGaussian
    z = torch.randn(5, 2, generator=G)
    torch.testing.assert_close(model.prior_log_prob(z), Laplace(0.0, 1.0).log_prob(z).sum(-1))
    with pytest.raises(ValueError, match="is for mmvae"):
        build("mvae", specs, 2, 4, posterior="laplace")
