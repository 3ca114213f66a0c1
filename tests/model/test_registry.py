"""The model registry: Table 1's inference-network parameter counts, and each model's posteriors."""

from __future__ import annotations

import pytest
import torch

from mvae_cli.data.format import ModalitySpec
from mvae_cli.model.model import parameter_counts
from mvae_cli.zoo import build, names

MODEL_NAMES = names()

MNIST = [ModalitySpec("image", "image", "bernoulli", (1, 28, 28)),
         ModalitySpec("label", "categorical", "categorical", (), 10)]


@pytest.mark.parametrize("name, count", [("vae", 730_240), ("cvae", 735_360), ("bivcca", 1_063_680),
                                         ("jmvae", 2_061_184), ("mvae", 1_063_680), ("mvae-q", 1_063_680)])
def test_inference_network_parameters_equal_table_1_for_mnist(name, count):
    model = build(name, MNIST, latent_dim=64, hidden=512)
    counts = parameter_counts(model)
    assert counts["inference"] == count
    # decoders: image 64→512→512→784 (698,128) and, but for the VAE, label 64→512→512→10 (301,066)
    # (the CVAE's image decoder takes z and the one-hot label: 74 → 512 → 512 → 784, 703,248)
    decoders = {"vae": 698_128, "cvae": 703_248}.get(name, 698_128 + 301_066)
    assert counts["total"] == count + decoders


def _batch(n=4):
    g = torch.Generator().manual_seed(0)
    return {"image": torch.rand(n, 1, 28, 28, generator=g), "label": torch.randint(0, 10, (n,), generator=g)}


def test_each_model_defines_the_posteriors_its_networks_give():
    batch = _batch()
    reasons = {name: {given: build(name, MNIST, 8, 16).posterior_reason(given.split("+") if given else [])
                      for given in ("image", "label", "image+label")} for name in MODEL_NAMES}
    assert [g for g, r in reasons["vae"].items() if r is None] == ["image"]
    assert [g for g, r in reasons["bivcca"].items() if r is None] == ["image", "label"]
    assert [g for g, r in reasons["cvae"].items() if r is None] == ["image+label"]
    for name in ("mvae", "mvae-q", "jmvae"):
        assert all(r is None for r in reasons[name].values()), name
    jmvae = build("jmvae", MNIST, 8, 16)
    joint = jmvae.posterior(batch, ["image", "label"])
    mu, logvar = jmvae.joint(batch)  # given both, it is the joint network's Gaussian
    torch.testing.assert_close(joint.mean, mu)
    torch.testing.assert_close(joint.logvar, logvar)
    image = jmvae.posterior(batch, ["image"])
    torch.testing.assert_close(image.mean, jmvae.encoders["image"](batch["image"])[0])
    cvae = build("cvae", MNIST, 8, 16)  # q(z | x, y): the flattened image and the one-hot label
    inputs = torch.cat([batch["image"].flatten(1), torch.nn.functional.one_hot(batch["label"], 10).float()], dim=1)
    torch.testing.assert_close(cvae.posterior(batch, ["image", "label"]).mean, cvae.encoders["image"](inputs)[0])
    vae = build("vae", MNIST, 8, 16)
    assert list(vae.decoders) == ["image"] and list(vae.encoders) == ["image"]
    torch.testing.assert_close(vae.posterior(batch, ["image"]).mean, vae.encoders["image"](batch["image"])[0])


def test_likelihood_rescaling_is_d_max_over_d_m_times_the_weights():
    from mvae_cli.model.model import rescaled_weights

    specs = [ModalitySpec("image", "image", "bernoulli", (3, 4, 4)), ModalitySpec("label", "categorical", "categorical", (), 10),
             ModalitySpec("attrs", "binary", "bernoulli", (6,))]
    assert rescaled_weights(specs) == {"image": 1.0, "label": 48.0, "attrs": 8.0}
    assert rescaled_weights(specs, {"label": 0.5, "image": 2.0}) == {"image": 2.0, "label": 24.0, "attrs": 8.0}


def test_model_rescale_sets_the_built_models_weights():
    from mvae_cli.engine.run import build_model
    from mvae_cli.recipe import resolve_recipe

    specs = [ModalitySpec("image", "image", "bernoulli", (1, 4, 4)), ModalitySpec("label", "categorical", "categorical", (), 3)]
    for name in ("mvae", "jmvae", "mmvae"):
        model = build_model(resolve_recipe(None, [f"model.name={name}", "model.rescale=true", "model.weights.label=2",
                                                  "model.hidden=8", "model.latent_dim=2"]), specs)
        assert model.weights == [1.0, 32.0], name
