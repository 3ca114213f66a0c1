"""Posteriors and fusions against closed forms and brute-force sums, with numbers."""

from __future__ import annotations

import math

import pytest
import torch

from mvae_cli.model.fusion import (
    mixture_of_experts,
    mixture_of_products,
    nonempty_subsets,
    poe,
    quotient_of_experts,
)
from mvae_cli.model.poe import gaussian_log_prob, standard_normal_log_prob
from mvae_cli.model.posterior import DiagonalGaussian, Mixture, strata_bounds

f64 = torch.float64


def experts_1d(means, variances):
    """``[1, M, 1]`` expert tensors of 1-D Gaussians."""
    mu = torch.tensor(means, dtype=f64).view(1, -1, 1)
    logvar = torch.log(torch.tensor(variances, dtype=f64)).view(1, -1, 1)
    return mu, logvar


def normal_log_pdf(z, mean, var):
    return -0.5 * ((z - mean) ** 2 / var + math.log(2 * math.pi * var))


def grid(n=2001, low=-12.0, high=12.0):
    return torch.linspace(low, high, n, dtype=f64)


def test_poe_is_the_precision_weighted_product_with_the_prior():
    # N(1, 1) · N(3, 1/2) · N(0, 1): precision 1 + 2 + 1 = 4, mean (1·1 + 3·2) / 4 = 7/4
    mu, logvar = experts_1d([1.0, 3.0, 50.0], [1.0, 0.5, 0.01])
    q = poe(mu, logvar, torch.tensor([[True, True, False]]))
    assert q.mean.item() == pytest.approx(1.75, abs=1e-12)
    assert q.logvar.exp().item() == pytest.approx(0.25, abs=1e-12)
    # log q(z) − [log p(z) + Σ log q_i(z)] does not depend on z: q is their normalised product
    z = grid(101).view(1, -1, 1)
    gap = q.log_prob(z) - (normal_log_pdf(z, 0, 1) + normal_log_pdf(z, 1, 1) + normal_log_pdf(z, 3, 0.5)).squeeze(-1)
    assert float(gap.std()) < 1e-10


def test_quotient_of_experts_divides_out_the_prior_n_minus_1_times():
    # N(1, 1/2) · N(3, 1/4) / N(0, 1): precision 2 + 4 − 1 = 5, mean (1·2 + 3·4) / 5 = 14/5
    mu, logvar = experts_1d([1.0, 3.0], [0.5, 0.25])
    q = quotient_of_experts(mu, logvar, torch.tensor([[True, True]]))
    assert q.mean.item() == pytest.approx(2.8, abs=1e-12)
    assert q.logvar.exp().item() == pytest.approx(0.2, abs=1e-12)
    z = grid(101).view(1, -1, 1)
    gap = q.log_prob(z) - (normal_log_pdf(z, 1, 0.5) + normal_log_pdf(z, 3, 0.25) - normal_log_pdf(z, 0, 1)).squeeze(-1)
    assert float(gap.std()) < 1e-10
    # one expert alone is itself; none is the prior
    alone = quotient_of_experts(mu, logvar, torch.tensor([[False, True]]))
    assert (alone.mean.item(), alone.logvar.exp().item()) == pytest.approx((3.0, 0.25), abs=1e-12)
    empty = quotient_of_experts(mu, logvar, torch.tensor([[False, False]]))
    assert (empty.mean.item(), empty.logvar.item()) == (0.0, 0.0)


def test_quotient_guard_reads_experts_broader_than_the_prior_as_the_prior():
    # Unguarded, N(2, 4) · N(−1, 4) / N(0, 1) has precision 1/4 + 1/4 − 1 < 0
    mu, logvar = experts_1d([2.0, -1.0, 1.0], [4.0, 4.0, 0.5])
    both_broad = quotient_of_experts(mu, logvar, torch.tensor([[True, True, False]]))
    assert both_broad.logvar.exp().item() == pytest.approx(1.0)
    assert both_broad.mean.item() == pytest.approx(1.0)  # (2·1 + (−1)·1) / 1
    # with a sharp expert: precision 1 + 1 + 2 − 2 = 2, mean (2 − 1 + 2) / 2 = 3/2
    mixed = quotient_of_experts(mu, logvar, torch.tensor([[True, True, True]]))
    assert (mixed.mean.item(), mixed.logvar.exp().item()) == pytest.approx((1.5, 0.5))


def test_mixture_of_experts_density_is_the_brute_force_sum():
    mu, logvar = experts_1d([-2.0, 0.5, 3.0], [0.3, 2.0, 1.0])
    q = mixture_of_experts(mu, logvar, torch.tensor([[True, False, True]]))
    z = grid(41).view(1, -1, 1)
    brute = torch.log(0.5 * normal_log_pdf(z, -2, 0.3).exp() + 0.5 * normal_log_pdf(z, 3, 1.0).exp()).squeeze(-1)
    torch.testing.assert_close(q.log_prob(z), brute, rtol=0, atol=1e-12)
    assert q.mean.item() == pytest.approx(0.5)  # (−2 + 3) / 2
    # it integrates to one on a fine grid
    fine = grid(20001)
    assert float(torch.trapezoid(q.log_prob(fine.view(1, -1, 1)).exp(), fine)) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(RuntimeError, match="at least one expert"):
        mixture_of_experts(mu, logvar, torch.tensor([[False, False, False]]))


def test_mixture_of_products_density_is_the_brute_force_sum_over_subsets():
    means, variances = [1.0, -1.0, 2.0], [0.5, 2.0, 0.25]
    mu, logvar = experts_1d(means, variances)
    q = mixture_of_products(mu, logvar, torch.tensor([[True, False, True]]))
    z = grid(41).view(1, -1, 1)
    parts = []
    for subset in ([0], [2], [0, 2]):  # the non-empty subsets of the mask, each with the prior expert
        precision = 1.0 + sum(1 / variances[i] for i in subset)
        mean = sum(means[i] / variances[i] for i in subset) / precision
        parts.append(normal_log_pdf(z, mean, 1 / precision).exp())
    brute = torch.log(sum(parts) / 3).squeeze(-1)
    torch.testing.assert_close(q.log_prob(z), brute, rtol=0, atol=1e-12)
    # mean: (1/3)[1/(1+2)·... ] = mean of the three component means 2/3, 8/5, (2 + 8)/7
    assert q.mean.item() == pytest.approx((2 / 3 + 8 / 5 + 10 / 7) / 3)
    assert nonempty_subsets(3).shape == (7, 3)


def test_strata_give_each_component_its_share_of_particles():
    log_w = torch.log(torch.tensor([[0.7, 0.3], [0.5, 0.5]], dtype=f64))
    assert strata_bounds(log_w, 10).tolist() == [[7, 10], [5, 10]]
    assert strata_bounds(log_w, 4).tolist() == [[3, 4], [2, 4]]
    # thirds: 1, 1, 1 of 3 and 0 particles for a component of weight 0
    thirds = torch.log(torch.tensor([[1 / 3, 1 / 3, 0.0, 1 / 3]], dtype=f64))
    assert strata_bounds(thirds, 3).tolist() == [[1, 2, 2, 3]]


def test_stratified_weights_make_the_particle_mean_exact_at_zero_noise():
    # With eps = 0 every particle sits on its component's mean, so the weighted particle mean
    # (1/K) Σ_j exp(w_j) z_j must equal Σ_c π_c mu_c exactly, for any K ≥ C.
    comps = DiagonalGaussian(torch.tensor([[[-1.0], [4.0]]], dtype=f64), torch.zeros(1, 2, 1, dtype=f64))
    q = Mixture(comps, torch.log(torch.tensor([[0.7, 0.3]], dtype=f64)))
    for K in (2, 3, 4, 7, 10):
        z = q.rsample(torch.zeros(1, K, 1, dtype=f64), 0, K)
        w = q.particle_log_weights(K, 0, K).exp()
        assert float((w * z[..., 0]).sum() / K) == pytest.approx(0.7 * -1 + 0.3 * 4, abs=1e-12)
    # K = 4: 3 particles of weight 0.7/0.75 on component 0, one of 0.3/0.25 on component 1
    torch.testing.assert_close(q.particle_log_weights(4, 0, 4).exp(),
                               torch.tensor([[0.7 / 0.75] * 3 + [1.2]], dtype=f64))


def test_particles_drawn_in_chunks_equal_particles_drawn_at_once():
    mu, logvar = experts_1d([-2.0, 0.5, 3.0], [0.3, 2.0, 1.0])
    q = mixture_of_products(mu.expand(2, -1, -1), logvar.expand(2, -1, -1), torch.tensor([[True] * 3, [True, True, False]]))
    eps = torch.randn(2, 10, 1, generator=torch.Generator().manual_seed(0), dtype=f64)
    whole, whole_w = q.rsample(eps, 0, 10), q.particle_log_weights(10, 0, 10)
    torch.testing.assert_close(q.rsample(eps[:, 3:7], 3, 10), whole[:, 3:7], rtol=0, atol=0)
    torch.testing.assert_close(q.particle_log_weights(4, 3, 10), whole_w[:, 3:7], rtol=0, atol=0)


def test_mixture_kl_to_prior_matches_numerical_integration():
    comps = DiagonalGaussian(torch.tensor([[[-1.5], [2.0]]], dtype=f64), torch.log(torch.tensor([[[0.4], [0.9]]], dtype=f64)))
    q = Mixture(comps, torch.log(torch.tensor([[0.25, 0.75]], dtype=f64)))
    z = grid(40001)
    log_q = q.log_prob(z.view(1, -1, 1))[0]
    exact = float(torch.trapezoid(log_q.exp() * (log_q - normal_log_pdf(z, 0, 1)), z))
    eps = torch.randn(1, 200_000, 1, generator=torch.Generator().manual_seed(1), dtype=f64)
    assert float(q.kl_to_prior(eps)) == pytest.approx(exact, abs=0.01)
    # the Gaussian's is the closed form: KL[N(1, 2) || N(0, 1)] = ½ (1 + 2 − 1 − log 2)
    g = DiagonalGaussian(torch.tensor([[1.0]], dtype=f64), torch.log(torch.tensor([[2.0]], dtype=f64)))
    assert float(g.kl_to_prior()) == pytest.approx(0.5 * (2 - math.log(2)))


def test_gaussian_log_prob_and_rsample_agree_with_the_plain_formulas():
    g = DiagonalGaussian(torch.tensor([[0.5, -1.0]], dtype=f64), torch.log(torch.tensor([[0.25, 4.0]], dtype=f64)))
    eps = torch.tensor([[[1.0, -0.5], [0.0, 2.0]]], dtype=f64)
    z = g.rsample(eps)
    torch.testing.assert_close(z, torch.tensor([[[1.0, -2.0], [0.5, 3.0]]], dtype=f64))
    expected = normal_log_pdf(z[..., 0], 0.5, 0.25) + normal_log_pdf(z[..., 1], -1.0, 4.0)
    torch.testing.assert_close(g.log_prob(z), expected)
    assert g.particle_log_weights(2) is None
    torch.testing.assert_close(gaussian_log_prob(z, torch.zeros(2, dtype=f64), torch.zeros(2, dtype=f64)),
                               standard_normal_log_prob(z))
