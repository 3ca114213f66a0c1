"""MMVAE's stratified IWAE bound and DReG, and MoPoE's ELBO, against closed forms and plain code."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from mvae_cli.data.format import ModalitySpec
from mvae_cli.model.fusion import nonempty_subsets, poe
from mvae_cli.model.poe import gaussian_kl_to_prior, product_of_experts
from mvae_cli.zoo import build
from mvae_cli.objectives import MMVAEObjective, MoPoEObjective, subset_elbo

SPECS = [ModalitySpec("image", "image", "bernoulli", (1, 2, 3)),
         ModalitySpec("label", "categorical", "categorical", (), 3),
         ModalitySpec("bits", "binary", "bernoulli", (4,))]
MASK = torch.tensor([[True, True, True], [True, True, True], [True, False, True], [False, True, False],
                     [True, False, False]])


def _batch(mask=MASK):
    g = torch.Generator().manual_seed(4)
    n = mask.shape[0]
    return {"image": torch.rand(n, 1, 2, 3, generator=g), "label": torch.randint(0, 3, (n,), generator=g),
            "bits": (torch.rand(n, 4, generator=g) < 0.5).float(), "mask": mask}


def _model(name, latent=2, posterior="gaussian"):
    torch.manual_seed(0)
    model = build(name, SPECS, latent_dim=latent, hidden=8, **({"posterior": posterior} if name == "mmvae" else {}))
    model.eval()
    return model.double()


def _double(batch):
    return {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}


@pytest.mark.parametrize("posterior", ["gaussian", "laplace"])
@torch.no_grad()
def test_stratified_iwae_with_one_particle_is_the_mixture_elbo(posterior):
    # K = 1: (1/|X|) Σ_m log w(z_m), z_m from expert m — the mixture ELBO E_q[log p(X|z)] − KL[q ‖ p]
    # by strata: the mixture sampled with one particle per observed component (Mixture.rsample,
    # |X| particles) and its stratified Monte Carlo KL, from the same noise.
    model, batch = _model("mmvae", posterior=posterior), _double(_batch())
    example, expert = MASK.nonzero(as_tuple=True)
    eps = torch.randn(example.shape[0], 1, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # the expert's own noise: ε itself, or Laplace noise F⁻¹(Φ(ε)) with scale σ/√2
    noise_of = (lambda e: e) if posterior == "gaussian" else (
        lambda e: torch.distributions.Laplace(0.0, 1.0).icdf(torch.distributions.Normal(0.0, 1.0).cdf(e)) / math.sqrt(2))
    bound, surrogate, _ = MMVAEObjective(k_particles=1).bounds(model, batch, 1.0, eps=eps)
    torch.testing.assert_close(bound, surrogate)
    mu, logvar = model.encode(batch, MASK)
    for b in range(MASK.shape[0]):
        shown = MASK[b].nonzero(as_tuple=True)[0]
        noise = torch.zeros(1, 3, 2, dtype=torch.float64)  # the b-th example's particles, one per expert
        noise[0, :shown.numel()] = eps[example == b, 0]
        q = model.posterior(None, MASK[b:b + 1], experts=(mu[b:b + 1], logvar[b:b + 1]))
        z = q.rsample(noise[:, :shown.numel()], 0, shown.numel())[0]  # [|X|, D]
        torch.testing.assert_close(z, mu[b, shown] + torch.exp(0.5 * logvar[b, shown]) * noise_of(eps[example == b, 0]))
        lik = 0
        for j in shown.tolist():
            x = batch[model.names[j]][b:b + 1]
            lik = lik + model.log_prob(model.names[j], model.decode(model.names[j], z),
                                       x.expand(shown.numel(), *x.shape[1:]))
        elbo = lik.mean() - q.kl_to_prior(noise[:, :shown.numel()])[0]
        torch.testing.assert_close(bound[b], elbo)


@torch.no_grad()
def test_stratified_iwae_against_a_plain_per_example_sum():
    # K = 3 particles per expert: (1/|X|) Σ_m log (1/K) Σ_k w(z_mk), log q the mixture's brute-force sum
    model, batch = _model("mmvae"), _double(_batch())
    example, expert = MASK.nonzero(as_tuple=True)
    eps = torch.randn(example.shape[0], 3, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    bound = MMVAEObjective(k_particles=3).bounds(model, batch, 1.0, eps=eps)[0]
    mu, logvar = model.encode(batch, MASK)
    for b in range(MASK.shape[0]):
        shown = MASK[b].nonzero(as_tuple=True)[0].tolist()
        per_expert = []
        for r in (example == b).nonzero(as_tuple=True)[0].tolist():
            m = int(expert[r])
            log_w = []
            for k in range(3):
                z = mu[b, m] + torch.exp(0.5 * logvar[b, m]) * eps[r, k]
                normal = lambda j: torch.distributions.Normal(mu[b, j], torch.exp(0.5 * logvar[b, j])).log_prob(z).sum()
                log_q = torch.logsumexp(torch.stack([normal(j) for j in shown]), 0) - math.log(len(shown))
                log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum()
                lik = sum(model.log_prob(model.names[j], model.decode(model.names[j], z[None]),
                                         batch[model.names[j]][b:b + 1])[0] for j in shown)
                log_w.append(lik + log_p - log_q)
            per_expert.append(torch.logsumexp(torch.stack(log_w), 0) - math.log(3))
        torch.testing.assert_close(bound[b], torch.stack(per_expert).mean())


def _gradients(model, objective, batch, draws, seed):
    """Per-draw gradients of the loss w.r.t. every encoder parameter, flattened: ``[draws, P]``."""
    params = [p for p in model.encoders.parameters()]
    torch.manual_seed(seed)
    out = []
    for _ in range(draws):
        model.zero_grad()
        loss, _ = objective(model, batch, 0)
        loss.backward()
        out.append(torch.cat([p.grad.flatten() for p in params]))
    return torch.stack(out)


@pytest.mark.slow
def test_dreg_gradient_equals_iwae_gradient_in_expectation():
    # The encoders' DReG gradient is unbiased for the IWAE gradient when each particle's proposal
    # is its own expert: examples showing one modality, K = 4 particles (and, over a mixture, K = 1).
    # 32 copies of the examples per draw; 60 draws; every coordinate within 4.5 SE (Bonferroni-ish
    # over the encoder's parameters), and DReG's variance is the smaller.
    model = _model("mmvae").float()
    model.train()
    one = torch.tensor([[True, False, False], [False, True, False], [False, False, True]]).repeat(32, 1)
    batch = _batch(one)
    iwae = _gradients(model, MMVAEObjective(k_particles=4, estimator="iwae"), batch, 60, 0).double()
    dreg = _gradients(model, MMVAEObjective(k_particles=4, estimator="dreg"), batch, 60, 1).double()
    diff = iwae.mean(0) - dreg.mean(0)
    se = (iwae.var(0) / 60 + dreg.var(0) / 60).sqrt()
    live = se > 1e-9
    assert int(live.sum()) > 50
    assert bool((diff[live].abs() < 4.5 * se[live]).all()), (diff[live].abs() / se[live]).max()
    assert float(dreg.var(0).sum()) < float(iwae.var(0).sum())
    # over a mixture (every modality shown) with K = 1
    full = _batch(torch.ones(32, 3, dtype=torch.bool))
    iwae = _gradients(model, MMVAEObjective(k_particles=1, estimator="iwae"), full, 60, 2).double()
    dreg = _gradients(model, MMVAEObjective(k_particles=1, estimator="dreg"), full, 60, 3).double()
    diff, se = iwae.mean(0) - dreg.mean(0), (iwae.var(0) / 60 + dreg.var(0) / 60).sqrt()
    live = se > 1e-9
    assert bool((diff[live].abs() < 4.5 * se[live]).all()), (diff[live].abs() / se[live]).max()


@torch.no_grad()
def test_mopoe_restricted_to_the_full_subset_is_the_mvae_poe():
    model, batch = _model("mopoe"), _double(_batch())
    mu, logvar = model.encode(batch, MASK)
    q = model.posterior(None, MASK, experts=(mu, logvar))
    full = poe(mu, logvar, MASK)  # the MVAE's posterior of each example's observed modalities
    for b in range(MASK.shape[0]):
        row = q.components.mu.shape[1] - 1 if bool(MASK[b].all()) else None
        if row is None:  # the component of the subset that is exactly the observed modalities
            row = int((nonempty_subsets(3) == MASK[b]).all(dim=1).nonzero()[0, 0])
        torch.testing.assert_close(q.components.mu[b, row], full.mu[b])
        torch.testing.assert_close(q.components.logvar[b, row], full.logvar[b])
    # an example showing one modality: the MoPoE ELBO is the MVAE ELBO of that modality (same noise)
    eps = torch.randn(5, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    single = torch.tensor([False, False, False, True, True])
    component = torch.zeros(5, dtype=torch.long)
    component[3], component[4] = 1, 0  # {label}, {image}: the only non-zero components
    elbo, _ = MoPoEObjective().per_example(model, batch, 0.7, eps=eps, component=component)
    mvae_model = _model("mvae")
    mvae_model.load_state_dict(model.state_dict())
    mvae = subset_elbo(mvae_model, batch, mu, logvar, torch.arange(5), MASK, 0.7, eps=eps)[0]
    torch.testing.assert_close(elbo[single], mvae[single])


@torch.no_grad()
def test_mopoe_kl_is_the_mean_of_the_subsets_kls():
    # the paper's KL term: (1/|subsets of X|) Σ_S KL[PoE(S) ‖ p], brute force over the subsets
    model, batch = _model("mopoe"), _double(_batch())
    mu, logvar = model.encode(batch, MASK)
    _, terms = MoPoEObjective().per_example(model, batch, 1.0)
    kls = []
    for b in range(MASK.shape[0]):
        shown = MASK[b].nonzero(as_tuple=True)[0].tolist()
        per_subset = []
        for size in range(1, len(shown) + 1):
            for combo in itertools.combinations(shown, size):
                subset = torch.tensor([j in combo for j in range(3)])
                m, lv = product_of_experts(mu[b:b + 1], logvar[b:b + 1], subset[None])
                per_subset.append(gaussian_kl_to_prior(m, lv)[0])
        kls.append(torch.stack(per_subset).mean())
    torch.testing.assert_close(terms["kl"], torch.stack(kls).mean())
