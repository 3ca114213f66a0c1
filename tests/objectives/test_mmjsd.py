"""mmJSD: the dynamic prior and the JS divergence against numerical integration, and its latent."""

from __future__ import annotations

import math

import torch

from mvae_cli.data.format import ModalitySpec
from mvae_cli.model.fusion import dynamic_prior
from mvae_cli.zoo import build
from mvae_cli.objectives import MMJSDObjective
from mvae_cli.objectives.mmjsd import js_divergence

GRID = torch.linspace(-12.0, 12.0, 200_001, dtype=torch.float64)


def _normal(mu, var):
    return torch.exp(-0.5 * (GRID - mu) ** 2 / var) / math.sqrt(2 * math.pi * var)


def _experts():
    # a batch of 2 rows, 3 experts, 1 dimension; row 0 uses experts 0 and 2, row 1 all three
    mu = torch.tensor([[[1.5], [-0.3], [0.4]], [[-2.0], [0.7], [0.1]]], dtype=torch.float64)
    logvar = torch.tensor([[[-1.0], [0.5], [0.3]], [[-0.2], [-1.5], [0.8]]], dtype=torch.float64)
    mask = torch.tensor([[True, False, True], [True, True, True]])
    return mu, logvar, mask


def test_dynamic_prior_is_the_normalised_geometric_mean_of_the_experts_and_the_prior():
    mu, logvar, mask = _experts()
    f = dynamic_prior(mu, logvar, mask)
    for b in range(2):
        shown = mask[b].nonzero(as_tuple=True)[0].tolist()
        pi = 1.0 / (len(shown) + 1)
        log_density = pi * torch.log(_normal(0.0, 1.0))
        for j in shown:
            log_density = log_density + pi * torch.log(_normal(float(mu[b, j, 0]), math.exp(float(logvar[b, j, 0]))))
        density = torch.exp(log_density)
        density = density / torch.trapezoid(density, GRID)
        mean = torch.trapezoid(GRID * density, GRID)
        var = torch.trapezoid((GRID - mean) ** 2 * density, GRID)
        assert abs(float(f.mu[b, 0]) - float(mean)) < 1e-8
        assert abs(math.exp(float(f.logvar[b, 0])) - float(var)) < 1e-8
    # and by hand for row 0: precision π(1 + λ_0 + λ_2), mean Σ λ_i mu_i / (1 + Σ λ_i)
    lam = torch.exp(-logvar[0, [0, 2], 0])
    torch.testing.assert_close(f.logvar[0, 0], -torch.log((1 + lam.sum()) / 3))
    torch.testing.assert_close(f.mu[0, 0], (lam * mu[0, [0, 2], 0]).sum() / (1 + lam.sum()))


def test_js_divergence_against_numerical_integration():
    mu, logvar, mask = _experts()
    js = js_divergence(mu, logvar, mask)
    f = dynamic_prior(mu, logvar, mask)
    for b in range(2):
        target = _normal(float(f.mu[b, 0]), math.exp(float(f.logvar[b, 0])))
        shown = mask[b].nonzero(as_tuple=True)[0].tolist()
        dists = [_normal(0.0, 1.0)] + [_normal(float(mu[b, j, 0]), math.exp(float(logvar[b, j, 0]))) for j in shown]
        expected = sum(torch.trapezoid(q * (torch.log(q) - torch.log(target)), GRID) for q in dists) / len(dists)
        assert abs(float(js[b]) - float(expected)) < 1e-7, (float(js[b]), float(expected))


SPECS = [ModalitySpec("image", "image", "bernoulli", (1, 2, 3)),
         ModalitySpec("label", "categorical", "categorical", (), 3)]


def _model():
    torch.manual_seed(0)
    model = build("mmjsd", SPECS, latent_dim=3, hidden=8, private_dim=2)
    return model.eval().double()


@torch.no_grad()
def test_posterior_is_the_mixture_of_shared_blocks_with_the_given_private_blocks():
    model = _model()
    g = torch.Generator().manual_seed(1)
    batch = {"image": torch.rand(4, 1, 2, 3, generator=g, dtype=torch.float64), "label": torch.randint(0, 3, (4,), generator=g)}
    assert model.latent_dim == 3 + 2 * 2
    mu, logvar = model.encode(batch, torch.ones(4, 2, dtype=torch.bool))  # [4, 2, 3 + 2]
    q = model.posterior(batch, ["image"])  # the image's c, its own s, and the label's s from the prior
    torch.testing.assert_close(q.mean, torch.cat([mu[:, 0, :3], mu[:, 0, 3:], torch.zeros(4, 2, dtype=torch.float64)], 1))
    z = torch.randn(4, 5, 7, generator=g, dtype=torch.float64)
    image = torch.distributions.Normal(mu[:, 0], torch.exp(0.5 * logvar[:, 0]))
    expected = image.log_prob(z[..., :5].transpose(0, 1)).sum(-1).T + torch.distributions.Normal(0.0, 1.0).log_prob(
        z[..., 5:]).sum(-1)
    torch.testing.assert_close(q.log_prob(z), expected)
    # given both, log q = log ½ Σ_j q(c|x_j) + Σ_m log q(s_m|x_m): a brute-force sum
    both = model.posterior(batch, ["image", "label"], experts=(mu, logvar))
    log_c = torch.stack([torch.distributions.Normal(mu[:, j, :3], torch.exp(0.5 * logvar[:, j, :3])).log_prob(
        z[..., :3].transpose(0, 1)).sum(-1).T for j in range(2)])
    log_s = sum(torch.distributions.Normal(mu[:, j, 3:], torch.exp(0.5 * logvar[:, j, 3:])).log_prob(
        z[..., 3 + 2 * j:5 + 2 * j].transpose(0, 1)).sum(-1).T for j in range(2))
    torch.testing.assert_close(both.log_prob(z), torch.logsumexp(log_c, 0) - math.log(2) + log_s)
    # the decoder of a modality sees [c, s_m]
    zz = torch.randn(3, 7, generator=g, dtype=torch.float64)
    torch.testing.assert_close(model.decode("label", zz), model.decoders["label"](torch.cat([zz[:, :3], zz[:, 5:]], 1)))


@torch.no_grad()
def test_objective_against_plain_per_example_code():
    model = _model()
    g = torch.Generator().manual_seed(2)
    mask = torch.tensor([[True, True], [True, False], [False, True]])
    batch = {"image": torch.rand(3, 1, 2, 3, generator=g, dtype=torch.float64),
             "label": torch.randint(0, 3, (3,), generator=g), "mask": mask}
    eps = torch.randn(3, 7, generator=g, dtype=torch.float64)
    component = torch.tensor([1, 0, 1])
    bound, _ = MMJSDObjective().per_example(model, batch, 0.5, eps=eps, component=component)
    mu, logvar = model.encode(batch, mask)
    normal = torch.distributions.Normal
    for b in range(3):
        shown = mask[b].nonzero(as_tuple=True)[0].tolist()
        j = int(component[b])
        c = mu[b, j, :3] + torch.exp(0.5 * logvar[b, j, :3]) * eps[b, :3]
        total = 0.0
        for m in shown:
            s = mu[b, m, 3:] + torch.exp(0.5 * logvar[b, m, 3:]) * eps[b, 3 + 2 * m:5 + 2 * m]
            name = model.names[m]
            total = total + model.log_prob(name, model.decoders[name](torch.cat([c, s])[None]).float(), batch[name][b:b + 1])[0]
            q_s = normal(mu[b, m, 3:], torch.exp(0.5 * logvar[b, m, 3:]))
            total = total - 0.5 * torch.distributions.kl_divergence(q_s, normal(0.0, 1.0)).sum()
        total = total - 0.5 * js_divergence(mu[b:b + 1, :, :3], logvar[b:b + 1, :, :3], mask[b:b + 1])[0]
        torch.testing.assert_close(bound[b], total.to(bound.dtype), rtol=1e-5, atol=1e-5)
