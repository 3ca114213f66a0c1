"""The comparison objectives (VAE, BiVCCA, JMVAE-kl) against plain per-example code, and every
model's single-sample bound against the estimator at K = 1."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from mvae_cli.data.format import ModalitySpec
from mvae_cli.evaluate.estimator import log_importance_weights, particle_noise
from mvae_cli.zoo import build, names

MODEL_NAMES = names()
from mvae_cli.objectives import subset_elbo
from mvae_cli.zoo import objective as make_objective

SPECS = [ModalitySpec("image", "image", "bernoulli", (1, 2, 3)),
         ModalitySpec("label", "categorical", "categorical", (), 3)]
# rows 0–2 paired, 3 image only, 4 label only
MASK = torch.tensor([[True, True], [True, True], [True, True], [True, False], [False, True]])


def _batch():
    g = torch.Generator().manual_seed(4)
    return {"image": torch.rand(5, 1, 2, 3, generator=g), "label": torch.randint(0, 3, (5,), generator=g), "mask": MASK}


def _model(name):
    torch.manual_seed(0)
    model = build(name, SPECS, latent_dim=2, hidden=8)
    model.eval()
    return model


def _elbo_terms(model, batch, b, q_mu, q_logvar, eps, scored, beta):
    """Plain single-example ELBO: Σ_{j ∈ scored} log p(x_j | z) − β KL[N(q_mu, q_var) || N(0, 1)]."""
    z = q_mu + torch.exp(0.5 * q_logvar) * eps
    lik = sum(model.log_prob(n, model.decode(n, z[None]), batch[n][b:b + 1])[0] for n in scored)
    kl = kl_divergence(Normal(q_mu, torch.exp(0.5 * q_logvar)), Normal(0.0, 1.0)).sum()
    return lik - beta * kl


@torch.no_grad()
def test_bivcca_equals_plain_per_example_code():
    model, batch, beta, mu = _model("bivcca"), _batch(), 0.7, 0.3
    torch.manual_seed(11)
    loss, _ = make_objective("bivcca", mu=mu, anneal_steps=10)(model, batch, step=7)
    torch.manual_seed(11)
    rows = MASK.nonzero().tolist()  # (example, modality), in the objective's order
    eps = torch.randn(len(rows), 2)
    total = torch.zeros(5)
    for r, (b, i) in enumerate(rows):
        name = SPECS[i].name
        q_mu, q_logvar = (t[0] for t in model.encoders[name](batch[name][b:b + 1]))
        scored = [s.name for j, s in enumerate(SPECS) if MASK[b, j]]
        total[b] += (mu if i == 0 else 1 - mu) * _elbo_terms(model, batch, b, q_mu, q_logvar, eps[r], scored, beta)
    assert float(loss) == pytest.approx(float(-total.mean()), abs=1e-5)


@torch.no_grad()
def test_jmvae_kl_equals_plain_per_example_code():
    model, batch, beta, alpha = _model("jmvae"), _batch(), 0.7, 0.25
    torch.manual_seed(12)
    loss, terms = make_objective("jmvae", alpha=alpha, anneal_steps=10)(model, batch, step=7)
    torch.manual_seed(12)
    singles = [(3, "image"), (4, "label")]  # rows after the three joint ones
    eps = torch.randn(3 + len(singles), 2)
    total = torch.zeros(5)
    for b in range(3):
        q_mu, q_logvar = (t[0] for t in model.joint({n: batch[n][b:b + 1] for n in ("image", "label")}))
        total[b] = _elbo_terms(model, batch, b, q_mu, q_logvar, eps[b], ["image", "label"], beta)
        for name in ("image", "label"):
            u_mu, u_logvar = (t[0] for t in model.encoders[name](batch[name][b:b + 1]))
            total[b] -= alpha * kl_divergence(Normal(q_mu, torch.exp(0.5 * q_logvar)),
                                              Normal(u_mu, torch.exp(0.5 * u_logvar))).sum()
    for r, (b, name) in enumerate(singles, start=3):
        u_mu, u_logvar = (t[0] for t in model.encoders[name](batch[name][b:b + 1]))
        total[b] = _elbo_terms(model, batch, b, u_mu, u_logvar, eps[r], [name], beta)
    assert float(loss) == pytest.approx(float(-total.mean()), abs=1e-5)
    assert float(terms["kl_unimodal"]) > 0


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n not in ("mmvae", "mopoe", "mmjsd")])  # Gaussian posteriors
@torch.no_grad()
def test_one_particle_of_the_estimator_is_the_single_sample_bound(name):
    # log w at K = 1 under q(z | P) for targets T is the single-sample ELBO of T under q(z | P)
    # (β = 1, the KL by its one-sample estimate log q(z) − log p(z)), drawn with the same noise;
    # averaged over many particles it is the objective's ELBO with the analytic KL.
    model, batch = _model(name), _batch()
    full = {k: v[:3] for k, v in batch.items() if k != "mask"}
    proposal = ["image", "label"] if name in ("mvae", "mvae-q", "jmvae", "cvae") else ["image"]
    target = ["image"] if name in ("vae", "cvae") else ["image", "label"]
    shown = torch.ones(3, 2, dtype=torch.bool)
    mu, logvar = model.encode(full, shown)
    given = torch.tensor([[n in proposal for n in model.names]] * 3)
    targets = torch.tensor([[n in target for n in model.names]] * 3)
    q = model.posterior(None, given, experts=(mu, logvar))
    log_w = log_importance_weights(model, full, [proposal], [target], 4000, seed=9, chunk_rows=512, workers=1)[0, 0]
    noise = torch.stack([particle_noise(9, b, 4000, 2) for b in range(3)])  # [3, K, 2], the estimator's
    eps = noise[:, 0]
    elbo, log_lik, kl = subset_elbo(model, full, mu, logvar, torch.arange(3), given, 1.0, eps=eps, targets=targets)
    std = torch.exp(0.5 * q.logvar)
    z = q.mean + std * eps
    one_sample = (Normal(q.mean, std).log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(dim=1)
    torch.testing.assert_close(log_w[:, 0], elbo + kl - one_sample, rtol=0, atol=1e-5)
    torch.testing.assert_close(log_w[:, 0], log_lik.sum(dim=1) - one_sample, rtol=0, atol=1e-5)
    # E_q[log w] = E_q[log p(x_T | z)] − KL: the particle mean is within 4 SE of the analytic-KL ELBO
    # estimated with the same particles' likelihoods
    particles = q.rsample(noise)  # [3, K, 2]
    if name == "cvae":  # p(x | z, y): the decoder takes z and the one-hot label
        context = model.decoder_context(full)[:, None].expand(-1, 4000, -1)
        particles = torch.cat([particles, context], dim=-1)
    width = particles.shape[-1]
    log_lik_mean = sum(model.log_prob(n, model.decode(n, particles.reshape(-1, width)),
                                      full[n].repeat_interleave(4000, dim=0)).view(3, -1) for n in target)
    analytic = log_lik_mean.mean(dim=1) - kl
    se = log_w.std(dim=1) / 4000 ** 0.5
    assert bool(((log_w.mean(dim=1) - analytic).abs() < 4 * se).all()), (log_w.mean(dim=1), analytic, se)
    # and the objective's validation bound is that ELBO for the models whose bound it is
    if name in ("mvae", "mvae-q"):
        torch.manual_seed(3)
        bound = make_objective(name).bound(model, {**full, "mask": shown})
        torch.manual_seed(3)
        again = subset_elbo(model, full, mu, logvar, torch.arange(3), shown, 1.0, eps=torch.randn(3, 2))[0]
        torch.testing.assert_close(bound, again)


def test_cvae_batch_without_a_fully_shown_example_adds_nothing():
    import numpy as np

    from mvae_cli import zoo
    from mvae_cli.data.format import ModalitySpec
    from mvae_cli.model.rows import with_host_mask

    specs = [ModalitySpec("image", "image", "bernoulli", (1, 4, 4)), ModalitySpec("label", "categorical", "categorical", (), 3)]
    model = zoo.build("cvae", specs, latent_dim=2, hidden=4)
    mask = np.array([[True, False], [False, True]])
    batch = with_host_mask({"image": torch.rand(2, 1, 4, 4).round(), "label": torch.tensor([0, 2]),
                            "mask": torch.from_numpy(mask)}, mask)
    loss, terms = zoo.objective("cvae")(model, batch, 10)
    assert float(loss) == 0.0 and not loss.requires_grad
