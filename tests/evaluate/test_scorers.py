"""The fused CPU scorers equal decode-then-score, and are used only where the speed-ups are on."""

import pytest
import torch

from mvae_cli import accel
from mvae_cli.accel import linear
from mvae_cli.data.format import ModalitySpec
from mvae_cli.evaluate.scorers import default_scorer, fused_scorer, scorers
from mvae_cli.model.model import MultimodalVAE

needs_onednn = pytest.mark.skipif(not linear.onednn_available(), reason="this torch build has no working oneDNN kernel")
SPECS = [ModalitySpec("image", "image", "bernoulli", (1, 4, 4)),
         ModalitySpec("label", "categorical", "categorical", (), 3),
         ModalitySpec("attrs", "binary", "bernoulli", (5,))]  # an MLP with batch normalisation


def _model(likelihoods=None):
    torch.manual_seed(1)
    model = MultimodalVAE(SPECS, latent_dim=3, hidden=16, likelihoods=likelihoods)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_()
    for p in model.likelihoods.parameters():  # a learned scale away from its start
        p.data.uniform_(-2.5, -1.0)
    return model.eval()


Z = torch.randn(4, 6, 3, generator=torch.Generator().manual_seed(2))
X = {"image": torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(3)), "label": torch.tensor([0, 2, 1, 1]),
     "attrs": torch.randint(0, 2, (4, 5), generator=torch.Generator().manual_seed(4)).float()}


@needs_onednn
@pytest.mark.parametrize("backend", ["aten", "onednn"])
def test_fused_cpu_scorers_equal_decode_then_log_prob(backend, monkeypatch):
    monkeypatch.setenv(linear.BACKEND_ENV, backend)  # the hidden layers' kernel (accel.fused.FusedMLP)
    model = _model()
    for name in X:
        fused = fused_scorer(model, name, rows_hint=24)
        assert fused is not None and fused.fused, name
        assert fused.backend == backend
        torch.testing.assert_close(fused(Z, X[name]), default_scorer(model, name)(Z, X[name]), rtol=1e-5, atol=1e-4)
    last = model.decoders["image"].net[-1]
    for scale, atol in ((30.0, 1e-3), (300.0, 1e-2)):  # logits of tens, then beyond the sigmoid's float32 range
        with torch.no_grad():
            last.weight.mul_(scale)
            last.bias.mul_(scale)
        fused = fused_scorer(model, "image", rows_hint=24)
        assert fused is not None
        torch.testing.assert_close(fused(Z, X["image"]), default_scorer(model, "image")(Z, X["image"]),
                                   rtol=1e-5, atol=atol)


@needs_onednn
@pytest.mark.parametrize("choice", ["continuous-bernoulli", "gaussian:learned", "laplace:learned-per-dim"])
def test_the_other_likelihoods_score_the_fused_decoders_logits(choice):
    model = _model({"image": choice})
    fused = fused_scorer(model, "image", rows_hint=24)
    assert fused is not None and fused.fused
    torch.testing.assert_close(fused(Z, X["image"]), default_scorer(model, "image")(Z, X["image"]), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("on", ["", "0", "1"])
def test_scorers_are_fused_only_on_cpu_where_the_speed_ups_are_on(on, monkeypatch):
    monkeypatch.setenv(accel.ENV, on)
    model = _model()
    built = scorers(model, list(X), "cpu", rows_hint=24)
    fused = on == "1" and linear.onednn_available()
    assert all(score.fused == fused for score in built.values())
    for name, score in built.items():
        torch.testing.assert_close(score(Z, X[name]), default_scorer(model, name)(Z, X[name]), rtol=1e-5, atol=1e-4)


def test_a_decoder_that_owns_its_likelihood_is_never_fused(monkeypatch):
    monkeypatch.setenv(accel.ENV, "1")
    torch.manual_seed(0)
    model = MultimodalVAE([SPECS[0], ModalitySpec("text", "sequence", "categorical", (5,), 6)], latent_dim=3,
                          hidden=8).eval()
    assert fused_scorer(model, "text", rows_hint=12) is None and not scorers(model, ["text"], "cpu")["text"].fused
