"""The importance-sampling estimator against closed forms (MVAE paper, §5, Eqs. 5–7)."""

import math

import numpy as np
import pytest
import torch

from mvae_cli.data.format import ModalitySpec, read_dataset, write_dataset
from mvae_cli.engine.data import SplitData
from mvae_cli.eval_config import EvalConfig
from mvae_cli.evaluate.estimator import (
    effective_sample_size,
    log_importance_weights,
    log_mean_exp,
    log_prior_predictive,
    particle_noise,
    prior_noise,
    stream,
)
from mvae_cli.evaluate.model_eval import evaluate_model
from mvae_cli.evaluate.plan import plan_evaluation
from mvae_cli.evaluate.scorers import scorers
from mvae_cli.evaluate.streaming import importance_statistics
from mvae_cli.model.model import MultimodalVAE
from tests.evaluate.models import LinearGaussian, PerfectClassifier

DIMS = {"x": 6, "y": 4}
PROPOSALS = [["x"], ["x", "y"]]


def _se(values: torch.Tensor) -> float:
    return float(values.std() / math.sqrt(values.numel()))


def test_log_marginal_and_joint_match_the_exact_values_and_the_error_shrinks_with_k():
    model = LinearGaussian(DIMS, inflate=1.5, shift=0.2, scales={"y": 0.3})
    batch = model.sample(300)
    exact = torch.stack([model.exact_log_prob(batch, ["x"]), model.exact_log_prob(batch, ["x", "y"])])  # [T, B]
    spread = {}
    for k in (10, 1000):
        error = log_mean_exp(log_importance_weights(model, batch, PROPOSALS, PROPOSALS, k, seed=3,
                                                    chunk_rows=4096)) - exact  # [P, T, B]
        spread[k] = torch.tensor([[_se(error[p, t]) for t in range(2)] for p in range(2)])
        if k == 1000:  # (at K = 10 the log-mean-exp's downward bias, Var/2K, still shows)
            for p in range(2):
                for t in range(2):
                    assert abs(float(error[p, t].mean())) < 4 * _se(error[p, t]), (p, t)
    assert bool((spread[10] > 5 * spread[1000]).all())  # the Monte Carlo error falls like 1/√K


def test_one_particle_equals_the_elbo_of_plain_code():
    model = LinearGaussian(DIMS, inflate=1.3)
    batch = model.sample(5)
    log_w = log_importance_weights(model, batch, [["x"]], [["x"], ["x", "y"]], 1, seed=7, first_index=20,
                                   chunk_rows=3)
    for b in range(5):
        eps = particle_noise(7, 20 + b, 1, model.latent_dim, torch.float64)[0]
        # q(z | x): prior precision 1 plus the expert's precision s²/(σ² · inflate), plain arithmetic
        s2 = model.s["x"] ** 2
        precision = 1 + s2 / (model.sigma ** 2 * 1.3)
        mean = ((batch["x"][b] - model.b["x"]) @ model.W["x"] / s2) * (s2 / (model.sigma ** 2 * 1.3)) / precision
        z = mean + eps / precision.sqrt()
        q = torch.distributions.Normal(mean, precision.rsqrt()).log_prob(z).sum()
        prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum()
        lik = {n: torch.distributions.Normal(model.W[n] @ z + model.b[n], model.sigma).log_prob(batch[n][b]).sum()
               for n in DIMS}
        assert float(log_w[0, 0, b, 0]) == pytest.approx(float(lik["x"] + prior - q), abs=1e-10)
        assert float(log_w[0, 1, b, 0]) == pytest.approx(float(lik["x"] + lik["y"] + prior - q), abs=1e-10)


def test_the_exact_posterior_as_proposal_gives_zero_weight_variance():
    model = LinearGaussian(DIMS)
    batch = model.sample(20)
    log_w = log_importance_weights(model, batch, PROPOSALS, PROPOSALS, 200, seed=0, chunk_rows=1000)
    for p in range(2):  # the target that matches the proposal: w = p(x_P) for every particle
        assert float(log_w[p, p].var(dim=-1).max()) < 1e-8
        assert torch.allclose(log_mean_exp(log_w[p, p]), model.exact_log_prob(batch, PROPOSALS[p]), atol=1e-8)
        assert torch.allclose(effective_sample_size(log_w[p, p]), torch.full((20,), 200.0, dtype=torch.float64))
    # ...and the PoE proposal is that posterior, computed by plain linear algebra
    mean, _ = model.exact_posterior(batch, ["x", "y"])
    eps = particle_noise(0, 0, 200, model.latent_dim, torch.float64)
    _, cov = model.exact_posterior(batch, ["x", "y"])
    z = mean[0] + eps * cov.diagonal().sqrt()
    exact_q = torch.distributions.MultivariateNormal(mean[0], cov).log_prob(z)
    joint = sum(model.log_prob(n, model.decode(n, z), batch[n][:1].expand(200, -1)) for n in DIMS)
    prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert torch.allclose(log_w[1, 1, 0], joint + prior - exact_q, atol=1e-9)


def test_conditional_equals_joint_minus_the_prior_predictive():
    model = LinearGaussian(DIMS, inflate=1.5)
    batch = model.sample(200)
    log_w = log_importance_weights(model, batch, PROPOSALS, [["x", "y"]], 1000, seed=1, chunk_rows=8192)
    log_py = log_mean_exp(log_prior_predictive(model, batch, ["y"], prior_noise(1, 20_000, 3, torch.float64),
                                               chunk_rows=8192))
    exact_py = model.exact_log_prob(batch, ["y"])
    assert abs(float((log_py - exact_py).mean())) < 4 * _se(log_py - exact_py) + 1e-3
    exact_conditional = model.exact_log_prob(batch, ["x", "y"]) - exact_py
    for p in range(2):
        error = log_mean_exp(log_w[p, 0]) - log_py - exact_conditional
        assert abs(float(error.mean())) < 4 * _se(error) + 1e-3


def _image_label_model(seed=0):
    torch.manual_seed(seed)
    specs = [ModalitySpec("image", "image", "bernoulli", (1, 4, 4)),
             ModalitySpec("label", "categorical", "categorical", (), 3)]
    return MultimodalVAE(specs, latent_dim=2, hidden=8).eval()


def test_results_do_not_depend_on_the_chunk_size(monkeypatch):
    monkeypatch.setenv("MVAE_ACCEL", "1")  # the fused CPU scorers too, where their kernels exist
    model = LinearGaussian(DIMS, inflate=1.4)
    batch = model.sample(9)
    runs = [log_importance_weights(model, batch, PROPOSALS, PROPOSALS, 50, seed=5, chunk_rows=rows)
            for rows in (7, 50, 120, 10_000)]  # within one example, one example, several, all at once
    for other in runs[1:]:
        torch.testing.assert_close(other, runs[0], rtol=1e-12, atol=1e-12)
    real = _image_label_model()
    images = {"image": torch.rand(6, 1, 4, 4), "label": torch.tensor([0, 1, 2, 0, 1, 2])}
    runs = [log_importance_weights(real, images, PROPOSALS_REAL, PROPOSALS_REAL, 40, seed=2, chunk_rows=rows,
                                   scorers=scorers(real, ["image", "label"], "cpu", rows) if fused else None,
                                   workers=workers)
            for rows, fused, workers in ((13, False, 1), (4096, False, 1), (13, True, 2), (100, True, 3))]
    for other in runs[1:]:
        torch.testing.assert_close(other, runs[0], rtol=1e-6, atol=1e-5)


PROPOSALS_REAL = [["image"], ["image", "label"]]


def _write_split_dataset(path, classes=4, n=40):
    rng = np.random.default_rng(0)
    label = rng.integers(0, classes, n)
    image = (np.eye(classes, dtype=np.uint8)[label] * 255).reshape(n, 1, 1, classes)
    specs = PerfectClassifier(classes).specs
    arrays = {"image": image, "label": label.astype(np.uint8)}
    write_dataset(path, "onehot", specs, {"train": arrays, "valid": arrays, "test": arrays}, seed=0)
    return path


def test_accuracy_of_a_model_built_to_predict_perfectly_is_one(tmp_path):
    model = PerfectClassifier()
    with read_dataset(_write_split_dataset(tmp_path / "onehot.h5")) as dataset:
        data = SplitData(dataset, "test", torch.device("cpu"))
        result = evaluate_model(model, data, plan_evaluation(model, "image", ["label"]),
                                EvalConfig(particles=20, prior_samples=50), budget_bytes=1 << 20, batch_size=16)
    assert result["accuracy"] == {"label": 1.0, "mean": 1.0}
    assert result["n_examples"] == 40


def test_evaluation_is_the_same_for_any_batch_and_chunk_size(tmp_path):
    model = PerfectClassifier()
    with read_dataset(_write_split_dataset(tmp_path / "onehot.h5")) as dataset:
        data = SplitData(dataset, "test", torch.device("cpu"))
        plan, config = plan_evaluation(model, "image", ["label"]), EvalConfig(30, 70, limit=25, seed=4)
        a = evaluate_model(model, data, plan, config, budget_bytes=1 << 20)
        b = evaluate_model(model, data, plan, config, budget_bytes=1 << 20, batch_size=4, chunk_rows=17)
    assert a["n_examples"] == b["n_examples"] == 25

    def numbers(d):
        return [v for v in _flatten(d)]

    assert numbers(a) == pytest.approx(numbers(b), rel=1e-6, abs=1e-6)


def _flatten(node):
    if isinstance(node, dict):
        for key in sorted(node):
            yield from _flatten(node[key])
    elif isinstance(node, np.ndarray):  # the per-example figures
        yield from (float(v) for v in node)
    else:
        yield float(node)


@pytest.mark.parametrize("fusion", ["poe", "qoe", "moe", "mopoe"])
def test_every_fusion_as_proposal_estimates_the_exact_log_likelihood(fusion):
    # Proposals that are not the exact posterior (the quotient, the mixtures, an inflated PoE):
    # the estimate of log p(x) and log p(x, y) must still sit within 4 SE of the exact value,
    # and the mixtures' strata (3 components for mopoe over {x, y}) must not bias it.
    model = LinearGaussian(DIMS, inflate=1.5, shift=0.1, fusion=fusion)
    batch = model.sample(200)
    exact = torch.stack([model.exact_log_prob(batch, ["x"]), model.exact_log_prob(batch, ["x", "y"])])
    log_w = log_importance_weights(model, batch, PROPOSALS, PROPOSALS, 600, seed=5, chunk_rows=4096)
    error = log_mean_exp(log_w) - exact  # [P, T, B]
    for p in range(2):
        for t in range(2):
            assert abs(float(error[p, t].mean())) < 4 * _se(error[p, t]) + 1e-3, (fusion, p, t)


def test_mixture_proposal_weights_do_not_depend_on_the_chunking():
    model = LinearGaussian(DIMS, fusion="mopoe")
    batch = model.sample(3)
    whole = log_importance_weights(model, batch, PROPOSALS, PROPOSALS, 30, seed=2, chunk_rows=4096, workers=1)
    pieces = log_importance_weights(model, batch, PROPOSALS, PROPOSALS, 30, seed=2, chunk_rows=7, workers=1)
    torch.testing.assert_close(pieces, whole, rtol=0, atol=1e-12)


def test_statistics_streamed_over_particle_chunks_equal_those_of_the_whole_weights():
    # One example's particles split into chunks (as --particles 10⁹ --limit 1 needs): the streamed
    # log-mean-exp, ESS and variance equal those of the full [P, T, B, K] weights.
    model = LinearGaussian(DIMS, inflate=1.5, shift=0.3, fusion="mopoe")
    batch = model.sample(2)
    whole = log_importance_weights(model, batch, PROPOSALS, PROPOSALS, 9000, seed=4, chunk_rows=100_000)
    for rows in (100_000, 1000, 333):
        stats = importance_statistics(model, batch, PROPOSALS, PROPOSALS, 9000, seed=4, chunk_rows=rows, workers=2)
        torch.testing.assert_close(stats["log_mean_exp"], log_mean_exp(whole), rtol=0, atol=1e-9)
        torch.testing.assert_close(stats["ess"], effective_sample_size(whole), rtol=1e-9, atol=0)
        torch.testing.assert_close(stats["var"], whole.var(dim=-1, correction=0), rtol=1e-9, atol=0)


def test_noise_slices_are_drawn_without_the_particles_before_them():
    whole = particle_noise(3, 7, 10_000, 2, torch.float64)
    assert torch.equal(particle_noise(3, 7, 10_000, 2, torch.float64, start=8190, stop=8200), whole[8190:8200])
    assert torch.equal(particle_noise(3, 7, 10_000, 2, torch.float64, start=4000, stop=4200), whole[4000:4200])
    # K within one block draws what earlier versions drew: one randn from the example's stream
    assert torch.equal(particle_noise(3, 7, 1000, 2), torch.randn(1000, 2, generator=stream(3, 0, 7)))
    assert not torch.equal(whole[:1000], whole[4096:5096])  # later blocks have streams of their own


def test_eq7_conditional_under_q_z_given_y_matches_the_exact_log_p_x_given_y():
    # log p(x|y) = log p̂(x, y) under q(z|y) − log p̂(y) from prior samples (MVAE paper, Eq. 7), as
    # mvae eval computes it for the proposal y: within 4 SE of the exact log p(x, y) − log p(y).
    model = LinearGaussian(DIMS, inflate=1.3, shift=0.1, scales={"y": 0.3})
    batch = model.sample(100)
    log_w = log_importance_weights(model, batch, [["y"]], [["x", "y"]], 1000, seed=6, chunk_rows=8192)
    z_prior = prior_noise(6, 4000, model.latent_dim, torch.float64)
    log_py = log_mean_exp(log_prior_predictive(model, batch, ["y"], z_prior, chunk_rows=400_000))
    estimate = log_mean_exp(log_w)[0, 0] - log_py
    exact = model.exact_log_prob(batch, ["x", "y"]) - model.exact_log_prob(batch, ["y"])
    error = estimate - exact
    assert abs(float(error.mean())) < 4 * _se(error)
    assert float(error.abs().mean()) < 0.5  # and each example's estimate is close, not just the mean
