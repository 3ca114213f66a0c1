"""The image-transform case study's figures (MVAE paper §7, Figs. 7–10).

``from_original.png``: ground-truth originals, then every other image modality decoded from
q(z | original) — the learnt transformations (edge detection, colour to grey, …).
``to_original.png``: for each transformation, its inputs, the original reconstructed from
q(z | that transformation) alone — colourisation, filling in the blank, watermark removal —
and the ground truth.

``mvae plot RUN_DIR`` draws both (:func:`plot_run_transforms`) for a run with two or more
image modalities, on the first test examples.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mvae_cli.data.format import read_dataset
from mvae_cli.engine.data import SplitData
from mvae_cli.engine.run import load_trained
from mvae_cli.evaluate.run_eval import run_dataset_path
from mvae_cli.figures.draw import image_grid_figure, save_figure


def _as_rgb(images: np.ndarray) -> np.ndarray:
    """``[n, C, H, W]`` → ``[n, 3, H, W]`` so modalities with 1 and 3 channels share a grid."""
    return np.repeat(images, 3, axis=1) if images.shape[1] == 1 else images


@torch.no_grad()
def _decode_from(model, batch: dict[str, torch.Tensor], source: str, target: str) -> np.ndarray:
    """Mean image of ``target`` decoded at the mean of q(z | source): ``[n, C, H, W]`` in [0, 1]."""
    q_mu = model.posterior(batch, [source]).mean
    return model.likelihoods[target].mean(model.decode(target, q_mu).float()).cpu().numpy()


def transform_grids(model, batch: dict[str, torch.Tensor], original: str | None = None):
    """The two grids as ``(images [R, n, 3, H, W], labels)`` pairs: from and to the original.

    Args:
        model: a trained model with at least two image modalities of one height and width.
        batch: test examples ``{name: [n, C, H, W] in [0, 1]}``.
        original: the original modality (default: the first image modality).

    Returns:
        ``((from_images, from_labels), (to_images, to_labels))``.
    """
    images = [s.name for s in model.specs if s.kind == "image"]
    original = original or images[0]
    others = [n for n in images if n != original]
    truth = _as_rgb(batch[original].cpu().numpy())
    from_rows, from_labels = [truth], [f"{original} (ground truth)"]
    for name in others:
        from_rows.append(_as_rgb(_decode_from(model, batch, original, name)))
        from_labels.append(f"{name} from {original}")
    to_rows, to_labels = [], []
    for name in others:
        to_rows += [_as_rgb(batch[name].cpu().numpy()), _as_rgb(_decode_from(model, batch, name, original))]
        to_labels += [f"{name} (input)", f"{original} from {name}"]
    to_rows.append(truth)
    to_labels.append(f"{original} (ground truth)")
    return (np.stack(from_rows), from_labels), (np.stack(to_rows), to_labels)


def save_transform_figures(model, batch: dict[str, torch.Tensor], out_dir: str | Path, fmt: str = "png") -> list[Path]:
    """Write ``from_original`` and ``to_original`` figures into ``out_dir``; returns their paths."""
    was_training = model.training
    model.eval()
    (from_images, from_labels), (to_images, to_labels) = transform_grids(model, batch)
    model.train(was_training)
    out_dir = Path(out_dir)
    return [
        save_figure(image_grid_figure(from_images, from_labels,
                                      title="Each transformation decoded from the original (paper Fig. 7)"),
                    out_dir / f"from_original.{fmt}"),
        save_figure(image_grid_figure(to_images, to_labels,
                                      title="The original reconstructed from each transformation (paper Figs. 8–10)"),
                    out_dir / f"to_original.{fmt}"),
    ]


def image_modalities(run_dir: str | Path) -> list[str]:
    """The image modalities of a run, from its ``run.json`` (empty when it cannot be read)."""
    try:
        modalities = json.loads((Path(run_dir) / "run.json").read_text()).get("modalities", [])
    except (OSError, ValueError):
        return []
    return [m["name"] for m in modalities if m.get("kind") == "image"]


def plot_run_transforms(run_dir: str | Path, out: str | Path, fmt: str = "png", n: int = 8,
                        checkpoint: str = "best") -> list[Path]:
    """The transforms study's figures of a trained run on its first ``n`` test examples.

    Returns:
        The files written; none when the run has fewer than two image modalities.

    Raises:
        UserError: the checkpoint or the run's dataset file is missing.
    """
    if len(image_modalities(run_dir)) < 2:
        return []
    device = torch.device("cpu")
    _, info, model = load_trained(Path(run_dir), checkpoint, device)
    with read_dataset(run_dataset_path(info)) as dataset:
        split = "test" if "test" in dataset.sizes else next(iter(dataset.sizes))
        data = SplitData(dataset, split, device, budget_bytes=0)  # read the n rows only, not the split
        batch = data.batch(torch.arange(min(n, data.n)))
    return save_transform_figures(model, batch, out, fmt)
