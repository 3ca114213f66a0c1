"""Shared drawing helpers: labelled image grids and atomic figure saving."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from mvae_cli.atomic import atomic_path


def image_grid_figure(images: np.ndarray, labels: list[str], title: str = ""):
    """A figure with one labelled row per condition.

    Args:
        images: ``[R, n, C, H, W]`` in [0, 1] (C is 1 or 3).
        labels: R row labels.
    """
    rows, n, c, h, w = images.shape
    fig, axes = plt.subplots(rows, 1, figsize=(1.0 + 0.6 * n, 0.2 + 0.62 * rows), squeeze=False)
    for r in range(rows):
        strip = np.concatenate([np.pad(img.transpose(1, 2, 0), ((1, 1), (1, 1), (0, 0)), constant_values=1.0)
                                for img in images[r]], axis=1)
        ax = axes[r, 0]
        ax.imshow(strip.squeeze(-1) if c == 1 else strip, cmap="gray" if c == 1 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(labels[r], rotation=0, ha="right", va="center", fontsize=8)
        for spine in ax.spines.values():
            spine.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` atomically (format from the suffix) and close it."""
    path = Path(path)
    with atomic_path(path, suffix=path.suffix + ".tmp") as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png", bbox_inches="tight")
    plt.close(fig)
    return path
