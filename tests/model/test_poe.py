import math

import numpy as np
import torch

from mvae_cli.model.poe import gaussian_kl_to_prior, gaussian_log_prob, product_of_experts, standard_normal_log_prob


def _closed_form(mu, var, mask):
    """Precision-weighted Gaussian with the N(0, 1) prior expert, one example, numpy float64."""
    precision = 1.0 + sum(1.0 / var[i] for i in range(len(mask)) if mask[i])
    mean = sum(mu[i] / var[i] for i in range(len(mask)) if mask[i]) / precision
    return mean, 1.0 / precision


def test_product_of_experts_matches_closed_form():
    torch.manual_seed(0)
    mu = torch.randn(5, 3, 4, dtype=torch.float64)
    logvar = torch.randn(5, 3, 4, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 0, 1], [0, 0, 0], [1, 1, 0]], dtype=torch.bool)
    q_mu, q_logvar = product_of_experts(mu, logvar, mask)
    for b in range(5):
        mean, var = _closed_form(mu[b].numpy(), np.exp(logvar[b].numpy()), mask[b].numpy())
        np.testing.assert_allclose(q_mu[b].numpy(), mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.exp(q_logvar[b].numpy()), var, rtol=1e-12)


def test_two_equal_experts_halve_the_variance_with_the_prior():
    # experts N(2, 1) twice and the prior N(0, 1): precision 3, mean 4/3.
    mu = torch.full((1, 2, 1), 2.0)
    q_mu, q_logvar = product_of_experts(mu, torch.zeros(1, 2, 1), torch.ones(1, 2, dtype=torch.bool))
    assert math.isclose(q_mu.item(), 4 / 3, rel_tol=1e-6)
    assert math.isclose(q_logvar.exp().item(), 1 / 3, rel_tol=1e-6)


def test_masked_expert_equals_dropped_expert():
    torch.manual_seed(1)
    mu, logvar = torch.randn(6, 4, 8), torch.randn(6, 4, 8)
    mask = torch.tensor([True, False, True, True]).expand(6, 4)
    garbage_mu, garbage_logvar = mu.clone(), logvar.clone()
    garbage_mu[:, 1], garbage_logvar[:, 1] = 1e3, -20.0  # whatever sits in a dropped slot must not matter
    masked = product_of_experts(garbage_mu, garbage_logvar, mask)
    keep = [0, 2, 3]
    dropped = product_of_experts(mu[:, keep], logvar[:, keep], torch.ones(6, 3, dtype=torch.bool))
    torch.testing.assert_close(masked[0], dropped[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(masked[1], dropped[1], rtol=0, atol=1e-6)


def test_no_expert_gives_the_prior():
    q_mu, q_logvar = product_of_experts(torch.randn(3, 2, 5), torch.randn(3, 2, 5), torch.zeros(3, 2, dtype=torch.bool))
    assert torch.equal(q_mu, torch.zeros(3, 5)) and torch.equal(q_logvar, torch.zeros(3, 5))


def test_kl_to_prior_matches_analytic_value():
    mu = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, math.log(0.25), math.log(4.0)]], dtype=torch.float64)
    var = logvar.exp()
    # KL[N(m, s²) || N(0, 1)] = ½ (s² + m² − 1 − log s²), per dimension
    expected = sum(0.5 * (v + m * m - 1 - math.log(v)) for m, v in zip(mu[0].tolist(), var[0].tolist()))
    assert math.isclose(gaussian_kl_to_prior(mu, logvar).item(), expected, rel_tol=1e-12)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, var.sqrt()), torch.distributions.Normal(0.0, 1.0)).sum()
    assert math.isclose(expected, reference.item(), rel_tol=1e-12)
    assert gaussian_kl_to_prior(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0.0


def test_gaussian_log_probs_match_torch_distributions():
    torch.manual_seed(2)
    z, mu, logvar = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)
    expected = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(z, mu, logvar), expected)
    torch.testing.assert_close(standard_normal_log_prob(z), torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1))
