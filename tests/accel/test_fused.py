"""A fused MLP decoder computes what its ``nn.Sequential`` computes, on either hidden-layer kernel."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mvae_cli.accel import linear
from mvae_cli.accel.fused import FusedMLP, fold_batch_norm, fused_kernels_available

pytestmark = pytest.mark.skipif(not (fused_kernels_available() and linear.onednn_available()),
                                reason="this torch build has no working oneDNN linear kernel")


def _mlp(batch_norm: bool) -> nn.Sequential:
    torch.manual_seed(0)
    norm = (lambda: nn.BatchNorm1d(16)) if batch_norm else nn.Identity
    net = nn.Sequential(nn.Linear(3, 16), norm(), nn.SiLU(), nn.Linear(16, 16), norm(), nn.SiLU(), nn.Linear(16, 7))
    for module in net.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_()
            module.bias.data.normal_()
    return net.eval()


@pytest.mark.parametrize("backend", ["onednn", "aten"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_hidden_layers_and_output_equal_the_sequential(backend, batch_norm):
    net = _mlp(batch_norm)
    mlp = FusedMLP(net, rows_hint=24, backend=backend)
    z = torch.randn(24, 3)
    with torch.inference_mode():
        expected_h, expected = net[:-1](z), net(z)
        h = mlp.hidden(z)
        torch.testing.assert_close(h, expected_h, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(mlp.output(h), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(mlp.output.weight, net[-1].weight)  # plain, for Wᵀx
        torch.testing.assert_close(mlp.output.softplus_sum(h), F.softplus(expected).sum(-1), rtol=1e-5, atol=1e-4)


def test_softplus_sum_is_exact_where_the_fused_sigmoid_underflows():
    net = _mlp(False)
    with torch.no_grad():
        net[-1].weight.mul_(300.0)  # logits in the hundreds: σ(−l) is 0 in float32
        net[-1].bias.mul_(300.0)
    mlp = FusedMLP(net, rows_hint=24, backend="onednn")
    z = torch.randn(24, 3)
    with torch.inference_mode():
        h = mlp.hidden(z)
        assert float(net(z).max()) > 100
        torch.testing.assert_close(mlp.output.softplus_sum(h), F.softplus(net(z)).sum(-1), rtol=1e-5, atol=1e-2)


def test_a_batch_norm_in_training_mode_or_an_mlp_ending_in_an_activation_is_refused():
    norm = nn.BatchNorm1d(16).train()
    with pytest.raises(TypeError, match="eval mode"):
        fold_batch_norm(torch.zeros(16, 3), torch.zeros(16), norm)
    with pytest.raises(TypeError, match="end with a Linear"):
        FusedMLP(nn.Sequential(nn.Linear(3, 4), nn.SiLU()), rows_hint=8, backend="onednn")
    with pytest.raises(TypeError, match="not a Linear"):
        FusedMLP(nn.Sequential(nn.Flatten(), nn.Linear(3, 4)), rows_hint=8, backend="onednn")
