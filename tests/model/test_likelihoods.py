"""Likelihoods against numerical integration and torch.distributions, and their recipe validation."""

import math

import pytest
import torch

from mvae_cli.data.format import ModalitySpec
from mvae_cli.errors import UserError
from mvae_cli.model.likelihoods import (
    DEFAULT_SCALE,
    MIN_SCALE,
    ContinuousBernoulli,
    Gaussian,
    Laplace,
    bernoulli_log_prob,
    build_likelihoods,
    continuous_bernoulli_log_norm,
    continuous_bernoulli_mean,
    parse_likelihood,
    softplus_sum,
)
from mvae_cli.model.model import MultimodalVAE

# λ from near 0 to near 1, densest around ½ where the closed form cancels
LAMBDAS = [1e-4, 0.01, 0.2, 0.45, 0.4999, 0.499999, 0.5, 0.500001, 0.5001, 0.51, 0.55, 0.9, 0.99, 1 - 1e-4]
SPECS = [ModalitySpec("image", "image", "bernoulli", (1, 4, 4)),
         ModalitySpec("label", "categorical", "categorical", (), 3),
         ModalitySpec("tags", "binary", "bernoulli", (5,))]


def _simpson(values: torch.Tensor, h: float) -> torch.Tensor:
    """Composite Simpson's rule over the last dimension (an odd number of points)."""
    return h / 3 * (values[..., 0] + values[..., -1] + 4 * values[..., 1:-1:2].sum(-1) + 2 * values[..., 2:-1:2].sum(-1))


def _grid(n: int = 20001) -> torch.Tensor:
    return torch.linspace(0, 1, n, dtype=torch.float64)


def _integral_of_kernel(lam: torch.Tensor) -> torch.Tensor:
    """∫₀¹ λ^x (1 − λ)^(1−x) dx by Simpson's rule in float64 (= 1 / C(λ))."""
    x = _grid()
    kernel = torch.exp(x * torch.log(lam)[:, None] + (1 - x) * torch.log1p(-lam)[:, None])
    return _simpson(kernel, 1 / (x.numel() - 1))


def _logits(lambdas, dtype=torch.float64) -> torch.Tensor:
    lam = torch.tensor(lambdas, dtype=torch.float64)
    return (torch.log(lam) - torch.log1p(-lam)).to(dtype)


def _bernoulli_reference(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ x log σ(l) + (1 − x) log σ(−l) per row, in float64 with torch's log-sigmoid."""
    l, x = logits.double().flatten(1), x.double().flatten(1)
    return (x * torch.nn.functional.logsigmoid(l) + (1 - x) * torch.nn.functional.logsigmoid(-l)).sum(1)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (5,), (1,)])  # groups of 64, 16 and 1 element
def test_bernoulli_log_prob_and_its_gradient_equal_the_closed_form(shape):
    """Logits from −200 to 200 (σ(±l) far below float32's smallest normal), grey levels and
    exact 0/1 pixels: the float32 value within float32 rounding of the float64 log-sigmoid sum,
    the gradient x − σ(l) times the row's weight, and the float64 path through gradcheck."""
    g = torch.Generator().manual_seed(0)
    R = 7
    logits = torch.randn(R, *shape, generator=g, dtype=torch.float64) * 20
    logits.view(R, -1)[:, 0] = torch.tensor([-200.0, -90.0, -1e-6, 0.0, 1e-6, 90.0, 200.0], dtype=torch.float64)
    x = torch.rand(R, *shape, generator=g, dtype=torch.float64)
    x.view(R, -1)[::2] = x.view(R, -1)[::2].round()
    expected = _bernoulli_reference(logits, x)
    lf = logits.float().requires_grad_()
    got = bernoulli_log_prob(lf, x.float())
    scale = (logits.abs() + 1).flatten(1).sum(1)  # the size of the terms summed
    assert ((got.double() - expected).abs() <= 1e-6 * scale).all()
    weights = torch.randn(R, generator=g)
    got.backward(weights)
    grad = (x - torch.sigmoid(logits)) * weights.double().view(-1, *[1] * len(shape))
    torch.testing.assert_close(lf.grad.double(), grad, rtol=1e-5, atol=1e-6)
    small = (logits[:3] / 20).requires_grad_()
    assert torch.autograd.gradcheck(bernoulli_log_prob, (small, x[:3].clone().requires_grad_()))
    torch.testing.assert_close(bernoulli_log_prob(logits, x), expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_logits_are_summed_in_float32(dtype):
    """Products of 64 values need float32 (and float16 cannot hold 2⁻⁶⁴): half-precision logits
    give the float32 result of the same rounded logits."""
    g = torch.Generator().manual_seed(2)
    logits = (torch.randn(4, 3072, generator=g) * 3).to(dtype)
    x = torch.rand(4, 3072, generator=g).round()
    expected = _bernoulli_reference(logits.float(), x)
    got = bernoulli_log_prob(logits, x.to(dtype))
    assert got.dtype == torch.float32
    assert ((got.double() - expected).abs() <= 1e-6 * (logits.double().abs() + 1).sum(1)).all()
    sp = softplus_sum(logits.clone(), consume=True)
    torch.testing.assert_close(sp.double(), torch.nn.functional.softplus(logits.double()).sum(-1), rtol=1e-6, atol=1e-3)


@pytest.mark.parametrize("consume", [False, True])
def test_softplus_sum_equals_float64_softplus(consume):
    g = torch.Generator().manual_seed(1)
    for shape in [(4, 3072), (2, 3, 784), (6, 5), (9,)]:
        logits = torch.randn(*shape, generator=g) * 40  # beyond ±88, where e^l overflows float32
        expected = torch.nn.functional.softplus(logits.double()).sum(-1)
        got = softplus_sum(logits.clone(), consume=consume)
        assert got.shape == expected.shape
        assert ((got.double() - expected).abs() <= 1e-6 * (logits.double().abs() + 1).sum(-1)).all()


def test_continuous_bernoulli_log_normaliser_equals_numerical_integration():
    expected = -torch.log(_integral_of_kernel(torch.tensor(LAMBDAS, dtype=torch.float64)))
    assert float(expected[LAMBDAS.index(0.5)]) == pytest.approx(math.log(2), abs=1e-12)
    got64 = continuous_bernoulli_log_norm(_logits(LAMBDAS))
    torch.testing.assert_close(got64, expected, rtol=0, atol=1e-10)
    got32 = continuous_bernoulli_log_norm(_logits(LAMBDAS, torch.float32)).double()
    torch.testing.assert_close(got32, expected, rtol=0, atol=2e-6)
    # at λ = 1e-4 the normaliser is large: C ≈ |logit| = 9.21
    assert float(expected[0]) == pytest.approx(math.log(9.2102), abs=1e-3)


def test_continuous_bernoulli_gradient_is_finite_and_continuous_at_the_series_switch():
    # d/dl log C by central differences of the float64 integral, against autograd in float32
    logits = torch.tensor([0.0, 1e-5, 1e-4, -1e-3, 0.05, 0.0999, 0.1001, 1.0, -3.0, 9.0])
    h = 1e-4
    up, down = torch.sigmoid(logits.double() + h), torch.sigmoid(logits.double() - h)
    numeric = (-torch.log(_integral_of_kernel(up)) + torch.log(_integral_of_kernel(down))) / (2 * h)
    l32 = logits.clone().requires_grad_(True)
    continuous_bernoulli_log_norm(l32).sum().backward()
    assert torch.isfinite(l32.grad).all() and float(l32.grad[0]) == 0.0
    # (the closed form's gradient is off by ~l/6 here below l = 1e-3: it cancels to zero in float32)
    torch.testing.assert_close(l32.grad.double(), numeric, rtol=0, atol=1e-6)


def test_continuous_bernoulli_density_integrates_to_one_and_its_mean_is_the_integral_of_x():
    likelihood = ContinuousBernoulli()
    x = _grid(4001)
    for lam in LAMBDAS:
        logit = _logits([lam])
        params = logit.expand(x.numel()).reshape(-1, 1)
        density = likelihood.log_prob(params, x.reshape(-1, 1)).exp()
        h = 1 / (x.numel() - 1)
        assert float(_simpson(density, h)) == pytest.approx(1.0, abs=1e-9), lam
        mean = float(_simpson(density * x, h))
        assert float(continuous_bernoulli_mean(logit)) == pytest.approx(mean, abs=1e-9), lam
        assert float(likelihood.mean(logit.float())) == pytest.approx(mean, abs=2e-6), lam


@pytest.mark.parametrize("cls,dist", [(Gaussian, torch.distributions.Normal), (Laplace, torch.distributions.Laplace)])
@pytest.mark.parametrize("scale", [0.3, "learned", "learned-per-dim"])
def test_gaussian_and_laplace_equal_torch_distributions(cls, dist, scale):
    g = torch.Generator().manual_seed(0)
    shape = (1, 4, 4)
    likelihood = cls(shape, scale)
    if scale != 0.3:  # move the learned scale off its start, per dimension where it has one
        with torch.no_grad():
            likelihood.raw_scale.copy_(torch.randn(likelihood.raw_scale.shape, generator=g))
        assert likelihood.raw_scale.shape == (shape if scale == "learned-per-dim" else ())
    params, x = torch.randn(6, *shape, generator=g) * 2, torch.rand(6, *shape, generator=g)
    sigma = likelihood.scale()
    expected = dist(torch.sigmoid(params), sigma).log_prob(x).sum(dim=(1, 2, 3))
    torch.testing.assert_close(likelihood.log_prob(params, x), expected, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(likelihood.mean(params), torch.sigmoid(params))


def test_a_learned_scale_starts_at_the_default_and_is_trained_to_the_residual_spread():
    shape = (1, 4, 4)
    g = torch.Generator().manual_seed(1)
    params, x = torch.randn(50, *shape, generator=g), torch.rand(50, *shape, generator=g)
    residual = x - torch.sigmoid(params)
    for cls, best in ((Gaussian, residual.pow(2).mean().sqrt()), (Laplace, residual.abs().mean())):
        likelihood = cls(shape, "learned")
        assert float(likelihood.scale().detach()) == pytest.approx(DEFAULT_SCALE, rel=1e-6)
        # the maximum-likelihood scale is the RMS residual (Gaussian) or the mean absolute one (Laplace):
        # the gradient of the loss is zero there, positive above, negative below
        for factor, sign in ((1.0, 0), (2.0, 1), (0.5, -1)):
            with torch.no_grad():
                likelihood.raw_scale.fill_(math.log(math.expm1(float(best) * factor - MIN_SCALE)))
            likelihood.zero_grad()
            (-likelihood.log_prob(params, x).sum()).backward()
            grad = float(likelihood.raw_scale.grad)
            assert math.isfinite(grad)
            if sign == 0:
                assert abs(grad) < 1e-3, cls
            else:
                assert grad * sign > 1.0, (cls, factor, grad)


def test_learned_scales_are_model_parameters_in_the_state_dict_and_get_gradients():
    model = MultimodalVAE(SPECS, latent_dim=3, hidden=8, likelihoods={"image": "gaussian:learned-per-dim"})
    state = model.state_dict()
    assert state["likelihoods.image.raw_scale"].shape == (1, 4, 4)
    assert any(p is model.likelihoods["image"].raw_scale for p in model.parameters())
    z = torch.randn(5, 3)
    x = torch.rand(5, 1, 4, 4)
    (-model.log_prob("image", model.decode("image", z), x).sum()).backward()
    grad = model.likelihoods["image"].raw_scale.grad
    assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().min()) > 0
    clone = MultimodalVAE(SPECS, latent_dim=3, hidden=8, likelihoods={"image": "gaussian:learned-per-dim"})
    with torch.no_grad():
        model.likelihoods["image"].raw_scale.add_(0.5)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.likelihoods["image"].scale(), model.likelihoods["image"].scale())
    # the default model has no likelihood parameters: old checkpoints keep loading
    assert not any(k.startswith("likelihoods.") for k in MultimodalVAE(SPECS, 3, 8).state_dict())


def test_defaults_are_the_datasets_and_describe_round_trips():
    built = build_likelihoods(SPECS, {"image": "laplace:0.25"})
    assert [l.describe() for l in built.values()] == ["laplace:0.25", "categorical", "bernoulli"]
    assert build_likelihoods(SPECS)["image"].describe() == "bernoulli"
    assert parse_likelihood("k", "gaussian") == ("gaussian", DEFAULT_SCALE)
    assert parse_likelihood("k", "gaussian:learned") == ("gaussian", "learned")
    assert parse_likelihood("k", "continuous-bernoulli") == ("continuous-bernoulli", None)


@pytest.mark.parametrize("choices,phrases", [
    ({"imag": "gaussian"}, ["'model.likelihoods.imag'", "no modality 'imag'", "image, label, tags"]),
    ({"image": "poisson"}, ["'model.likelihoods.image'", "unknown likelihood 'poisson'", "continuous-bernoulli"]),
    ({"label": "continuous-bernoulli"}, ["'model.likelihoods.label'", "does not fit categorical modalities", "(they take: categorical)"]),
    ({"tags": "gaussian"}, ["'model.likelihoods.tags'", "does not fit binary modalities", "(they take: bernoulli)"]),
    ({"image": "categorical"}, ["'model.likelihoods.image'", "does not fit image modalities",
                              "bernoulli, continuous-bernoulli, gaussian, laplace"]),
    ({"image": "gaussian:-1"}, ["'model.likelihoods.image'", "positive number", "'-1'"]),
    ({"image": "laplace:wide"}, ["'model.likelihoods.image'", "'wide'"]),
    ({"image": "bernoulli:0.1"}, ["'model.likelihoods.image'", "takes no scale"]),
])
def test_bad_choices_name_the_key(choices, phrases):
    with pytest.raises(UserError) as caught:
        build_likelihoods(SPECS, choices)
    message = str(caught.value)
    assert "\n" not in message
    for phrase in phrases:
        assert phrase in message, message


def test_recipes_set_likelihoods_by_override_and_a_sweep_can_vary_them(tmp_path):
    from mvae_cli.recipe import resolve_recipe
    from mvae_cli.sweep.grid import load_sweep

    recipe = resolve_recipe(None, ["model.likelihoods.image=gaussian:learned", "data.binarize=false"])
    assert recipe.model.likelihoods == {"image": "gaussian:learned"} and recipe.data.binarize is False
    with pytest.raises(UserError, match="'model.likelihoods.image': unknown likelihood 'gauss'"):
        resolve_recipe(None, ["model.likelihoods.image=gauss"])
    path = tmp_path / "study.yaml"
    path.write_text("grid:\n  model.likelihoods.image: [bernoulli, continuous-bernoulli, 'laplace:0.5']\n")
    sweep = load_sweep(path)
    assert [p.name for p in sweep.points] == ["model.likelihoods.image=bernoulli",
                                              "model.likelihoods.image=continuous-bernoulli",
                                              "model.likelihoods.image=laplace_0.5"]
    assert sweep.points[2].recipe.model.likelihoods == {"image": "laplace:0.5"}
    path.write_text("grid:\n  model.likelihoods.image: [bernoulli, 'laplace:-2']\n")
    with pytest.raises(UserError, match="laplace"):
        load_sweep(path)
    path.write_text("grid:\n  model.likelihoods: [{image: laplace}]\n")
    with pytest.raises(UserError, match="is a section of the recipe"):
        load_sweep(path)


@pytest.mark.parametrize("choice", ["continuous-bernoulli", "laplace:learned", "bernoulli"])
def test_sample_grids_draw_the_likelihoods_mean(choice):
    from mvae_cli.figures.samples import sample_rows

    torch.manual_seed(0)
    model = MultimodalVAE(SPECS, latent_dim=3, hidden=8, likelihoods={"image": choice})
    images, labels = sample_rows(model, n=8, seed=5)
    assert labels[0] == "prior p(z)" and images.shape == (1 + 3, 8, 1, 4, 4)  # the prior, then each label
    z = torch.randn(8, 3, generator=torch.Generator().manual_seed(5))  # the prior row's draws
    with torch.no_grad():
        logits = model.decode("image", z)
    expected = continuous_bernoulli_mean(logits) if choice == "continuous-bernoulli" else torch.sigmoid(logits)
    torch.testing.assert_close(torch.from_numpy(images[0]), expected)
    assert 0 <= images.min() and images.max() <= 1
    if choice == "continuous-bernoulli":  # not σ(l): the figure would be wrong with the Bernoulli's mean
        assert float((expected - torch.sigmoid(logits)).abs().max()) > 1e-3


class _PlainLayer:
    """An :class:`~mvae_cli.model.likelihoods.AffineLogits` in plain torch."""

    def __init__(self, weight, bias):
        self.weight, self.bias = weight, bias

    def __call__(self, h):
        return torch.nn.functional.linear(h, self.weight, self.bias)

    def softplus_sum(self, h):
        return torch.nn.functional.softplus(self(h)).sum(dim=-1)


@pytest.mark.parametrize("choice", ["bernoulli", "continuous-bernoulli", "gaussian:learned-per-dim", "laplace:0.3",
                                    "categorical"])
def test_the_particle_forms_equal_log_prob_row_by_row(choice):
    """Every shape the estimator asks for (k particles per example, samples shared by all examples,
    the logits of a last layer) gives log_prob's value of each (example, particle) pair."""
    g = torch.Generator().manual_seed(0)
    categorical = choice == "categorical"
    spec = SPECS[1] if categorical else SPECS[0]
    likelihood = build_likelihoods([spec], {spec.name: choice})[spec.name]
    for p in likelihood.parameters():
        p.data.uniform_(-2.0, -1.0, generator=g)
    E, k, H = 3, 5, 4
    P = 3 if categorical else 16
    shape = (P,) if categorical else (1, 4, 4)
    x = torch.randint(0, 3, (E,), generator=g) if categorical else torch.rand(E, 1, 4, 4, generator=g)
    params = torch.randn(E, k, *shape, generator=g) * 30  # logits beyond ±80 too

    def by_row(params, x):  # [E, k, ...], [E, ...] → [E, k], one log_prob call per pair
        return torch.stack([torch.cat([likelihood.log_prob(params[e, j:j + 1], x[e:e + 1]) for j in range(k)])
                            for e in range(E)])

    with torch.no_grad():
        expected = by_row(params, x)
        for consume in (False, True):
            got = likelihood.particle_log_prob(params.clone(), x, consume=consume)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-3)
        small = params / 10  # within ±80 for the in-place softplus
        torch.testing.assert_close(likelihood.particle_log_prob(small.clone(), x, consume=True), by_row(small, x),
                                   rtol=1e-5, atol=1e-4)
        shared = params[0]  # [S = k, ...] for every example
        torch.testing.assert_close(likelihood.shared_log_prob(shared, x), by_row(shared.expand(E, *shared.shape), x),
                                   rtol=1e-5, atol=1e-3)
        h = torch.randn(E, k, H, generator=g)
        layer = _PlainLayer(torch.randn(P, H, generator=g) * 3, torch.randn(P, generator=g))
        logits = layer(h).view(E, k, *shape)
        torch.testing.assert_close(likelihood.affine_particle_log_prob(h, layer, x), by_row(logits, x),
                                   rtol=1e-5, atol=1e-3)
    assert likelihood.copies_x == (choice not in ("bernoulli", "categorical"))
