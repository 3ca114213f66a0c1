"""The CPU linear kernel: oneDNN's layer equals ``F.linear``, the choice follows the processor, and
:func:`prepare` swaps a model's layers only where the speed-ups are on."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mvae_cli import accel
from mvae_cli.accel import linear
from mvae_cli.data.format import ModalitySpec
from mvae_cli.errors import UserError
from mvae_cli.model.model import MultimodalVAE

SPECS = [ModalitySpec("image", "image", "bernoulli", (1, 4, 4)),
         ModalitySpec("label", "categorical", "categorical", (), 3),
         ModalitySpec("text", "sequence", "categorical", (5,), 6)]


def _model():
    torch.manual_seed(0)
    return MultimodalVAE(SPECS, latent_dim=3, hidden=8)


@pytest.mark.parametrize("backend", ["onednn", "aten"])
def test_a_prepared_layer_matches_f_linear_in_values_and_gradients_on_either_kernel(backend, monkeypatch):
    if backend == "onednn" and not linear.onednn_available():
        pytest.skip("this torch build has no working oneDNN linear kernel")
    monkeypatch.setenv(accel.ENV, "1")
    monkeypatch.setenv(linear.BACKEND_ENV, backend)
    assert linear.cpu_linear_backend() == backend
    calls = []
    monkeypatch.setattr(linear._OneDNNLinear, "apply",
                        staticmethod(lambda *a, _apply=linear._OneDNNLinear.apply: calls.append(1) or _apply(*a)))
    torch.manual_seed(3)
    layer = linear.prepare(nn.Sequential(nn.Linear(300, 200)))[0]
    x = torch.randn(64, 300, requires_grad=True)
    out = layer(x)
    assert len(calls) == (backend == "onednn")  # the kernel asked for is the one that ran
    grads = torch.autograd.grad(out.square().sum(), (x, layer.weight, layer.bias))
    expected_out = F.linear(x, layer.weight, layer.bias)
    expected = torch.autograd.grad(expected_out.square().sum(), (x, layer.weight, layer.bias))
    torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-4)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)
    assert list(layer.state_dict()) == ["weight", "bias"]  # checkpoints are nn.Linear's


def test_prepare_puts_every_linear_layer_on_onednn_with_the_same_parameters_and_keys(monkeypatch):
    if not linear.onednn_available():
        pytest.skip("this torch build has no working oneDNN linear kernel")
    monkeypatch.setenv(accel.ENV, "1")
    monkeypatch.setenv(linear.BACKEND_ENV, "onednn")
    model = _model()
    plain = _model()
    parameters, keys = list(model.parameters()), list(model.state_dict())
    assert linear.prepare(model) is model
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert layers and all(type(m) is linear.OneDNNLinear for m in layers)
    assert all(a is b for a, b in zip(model.parameters(), parameters)) and list(model.state_dict()) == keys
    model.load_state_dict(plain.state_dict())  # a checkpoint of the plain model loads as it is
    batch = {"image": torch.rand(5, 1, 4, 4), "label": torch.tensor([0, 1, 2, 0, 1]),
             "text": torch.tensor([[4, 1, 5, 5, 5]] * 5)}
    mask = torch.ones(5, 3, dtype=torch.bool)
    for got, want in zip(model.encode(batch, mask), plain.encode(batch, mask)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    z = torch.randn(5, 3)
    torch.testing.assert_close(model.decode("image", z), plain.decode("image", z), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("on, backend", [("", "onednn"), ("0", "onednn"), ("1", "aten")])
def test_prepare_changes_nothing_unless_enabled_with_the_onednn_kernel(on, backend, monkeypatch):
    if backend == "onednn" and not linear.onednn_available():
        pytest.skip("this torch build has no working oneDNN linear kernel")
    monkeypatch.setenv(accel.ENV, on)
    monkeypatch.setenv(linear.BACKEND_ENV, backend)
    model = linear.prepare(_model())
    assert all(type(m) is nn.Linear for m in model.modules() if isinstance(m, nn.Linear))


@pytest.mark.parametrize("capability, expected", [("AVX512", "onednn"), ("AVX512_VNNI", "onednn"),
                                                  ("AVX2", "aten"), ("DEFAULT", "aten")])
def test_the_cpu_linear_kernel_follows_the_processor(capability, expected, monkeypatch):
    monkeypatch.delenv(linear.BACKEND_ENV, raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(linear, "onednn_available", lambda: True)
    linear._backend.cache_clear()
    try:
        assert linear.cpu_linear_backend() == expected
        monkeypatch.setattr(linear, "onednn_available", lambda: False)  # a build without the kernel
        linear._backend.cache_clear()
        assert linear.cpu_linear_backend() == "aten"
    finally:
        linear._backend.cache_clear()


@pytest.mark.parametrize("mode", ["inference_mode", "no_grad"])
def test_the_onednn_check_gives_the_same_answer_when_first_asked_without_autograd(mode):
    linear.onednn_available.cache_clear()
    try:
        outside = linear.onednn_available()
        linear.onednn_available.cache_clear()
        with getattr(torch, mode)():  # an evaluation's first decode asks from here
            inside = linear.onednn_available()
        assert inside == outside
        if torch.backends.mkldnn.is_available():
            assert inside  # this build has the kernel: the check must not fail for the caller's mode
    finally:
        linear.onednn_available.cache_clear()


@pytest.mark.parametrize("on", ["", "1"])
def test_a_cpu_linear_kernel_that_does_not_exist_is_one_clear_error_enabled_or_not(on, monkeypatch):
    monkeypatch.setenv(accel.ENV, on)
    monkeypatch.setenv(linear.BACKEND_ENV, "mkl")
    with pytest.raises(UserError, match=r"MVAE_CPU_LINEAR='mkl' is not a CPU linear kernel; set it to onednn or aten"):
        linear.cpu_linear_backend()
    with pytest.raises(UserError, match=r"MVAE_CPU_LINEAR='mkl'"):
        linear.prepare(_model())
