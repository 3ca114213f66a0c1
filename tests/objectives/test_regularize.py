"""β target and free bits: the KL an objective charges."""

import pytest
import torch

from mvae_cli.data.format import ModalitySpec
from mvae_cli.model.model import MultimodalVAE
from mvae_cli.objectives.elbo import subset_elbo
from mvae_cli.objectives.regularize import beta_at, free_bits_kl


def test_beta_rises_to_its_target():
    assert [beta_at(s, 4, 0.5) for s in (0, 2, 4, 9)] == [0.0, 0.25, 0.5, 0.5]
    assert beta_at(0, 0, 0.3) == 0.3


def test_free_bits_floor_units_on_the_batch_average():
    kl = torch.tensor([[0.05, 1.0], [0.15, 3.0]], requires_grad=True)
    charged = free_bits_kl(kl, 0.2)  # unit 0 averages 0.1 < 0.2: charged 0.2 per row, no gradient
    assert charged.tolist() == pytest.approx([1.2, 3.2])
    assert float(charged.detach().mean()) == pytest.approx(max(0.1, 0.2) + max(2.0, 0.2))
    charged.sum().backward()
    assert kl.grad.tolist() == [[0.0, 1.0], [0.0, 1.0]]
    assert torch.equal(free_bits_kl(kl.detach(), 0.0), kl.detach().sum(dim=1))


def test_subset_elbo_charges_the_floor_and_reports_the_plain_kl():
    torch.manual_seed(0)
    specs = [ModalitySpec("image", "image", "bernoulli", (1, 4, 4)), ModalitySpec("label", "categorical", "categorical", (), 3)]
    model = MultimodalVAE(specs, latent_dim=3, hidden=8)
    batch = {"image": torch.rand(5, 1, 4, 4), "label": torch.randint(0, 3, (5,))}
    mask = torch.ones(5, 2, dtype=torch.bool)
    mu, logvar = model.encode(batch, mask)
    rows, eps = torch.arange(5), torch.randn(5, 3)
    plain = subset_elbo(model, batch, mu, logvar, rows, mask, 0.5, eps=eps)
    floored = subset_elbo(model, batch, mu, logvar, rows, mask, 0.5, eps=eps, free_bits=100.0)
    assert torch.equal(plain[2], floored[2]) and torch.equal(plain[1], floored[1])
    # every unit is below 100 nats: each row is charged β · D · 100 instead of its KL
    expected = plain[0] + 0.5 * plain[2] - 0.5 * 3 * 100.0
    assert torch.allclose(floored[0], expected, atol=1e-4)
