"""``samples.png``: images decoded from the prior and from each class of every categorical modality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mvae_cli.data.format import class_names
from mvae_cli.engine.hooks import TrainingHook
from mvae_cli.figures.draw import image_grid_figure, save_figure


@torch.no_grad()
def sample_rows(model, n: int = 8, seed: int = 0, class_names: dict[str, list[str]] | None = None
                ) -> tuple[np.ndarray, list[str]] | None:
    """Decoded image means, one row per condition: ``(images [R, n, C, H, W] in [0, 1], labels)``.

    Row 0 draws z ~ p(z); then, for every categorical modality and class c, z ~ q(z | y = c)
    (``model.posterior`` of that modality alone), and for every single binary
    attribute, z ~ q(z | y = 1). None without an image modality. Rows are labelled with the
    dataset's class names (:func:`~mvae_cli.data.format.class_names`) where it has them
    ("shape = circle"), else with class ids ("shape = 1").
    """
    images = [s for s in model.specs if s.kind == "image"]
    if not images or model.conditional:  # a CVAE's decoder needs y as well as z
        return None
    image = images[0].name
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    noise = lambda rows: torch.randn(rows, model.latent_dim, generator=generator).to(device)  # noqa: E731
    zs, labels = [model.prior_from_noise(noise(n))], ["prior p(z)"]
    for spec in model.specs:
        if model.posterior_reason([spec.name]) is not None:  # the VAE infers from its image only
            continue
        if spec.kind == "categorical":
            named = (class_names or {}).get(spec.name) or [str(c) for c in range(spec.classes)]
            values, names = torch.arange(spec.classes, device=device), [f"{spec.name} = {c}" for c in named]
        elif spec.kind == "binary" and spec.shape == (1,):  # one attribute per modality (CelebA19)
            values, names = torch.ones(1, 1, device=device), [f"{spec.name} = 1"]
        else:
            continue
        inputs = values.repeat_interleave(n, dim=0)
        q = model.posterior({spec.name: inputs}, [spec.name])
        z = q.rsample(noise(inputs.shape[0]).unsqueeze(1), 0, 1).squeeze(1)
        zs.extend(z.split(n))
        labels.extend(names)
    out = model.likelihoods[image].mean(model.decode(image, torch.cat(zs)).float()).cpu().numpy()
    model.train(was_training)
    return out.reshape(len(labels), n, *out.shape[1:]), labels


def save_sample_grid(model, path: str | Path, n: int = 8, seed: int = 0,
                     class_names: dict[str, list[str]] | None = None) -> Path | None:
    """Draw :func:`sample_rows` into a labelled PNG at ``path`` (atomically)."""
    rows = sample_rows(model, n, seed, class_names)
    if rows is None:
        return None
    images, labels = rows
    fig = image_grid_figure(images, labels, title="Samples: from the prior, and conditioned on each class")
    return save_figure(fig, path)


class SampleGridHook(TrainingHook):
    """``samples.png`` in the run directory once the run has trained its last epoch."""

    def finish(self, session) -> None:
        names = class_names(session.dataset.attrs, session.dataset.specs)
        save_sample_grid(session.model, session.run_dir / "samples.png", seed=session.recipe.seed, class_names=names)
