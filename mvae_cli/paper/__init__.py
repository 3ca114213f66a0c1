"""Published values shipped with the package, so that reports set ours beside the paper's.

``wu_goodman_2018.json`` holds the MVAE paper's Tables 1–5 (Wu & Goodman 2018), read off
the paper: per table, per figure (``log_px``, ``log_pxy``, ``log_px_given_y``, the
``var_*`` weight variances, ``inference_parameters``), per model (``vae``, ``cvae``,
``bivcca``, ``jmvae``, ``mvae``, ``mvae19``) and per dataset (mvae's dataset names:
``binary-mnist``, ``mnist``, ``fashion-mnist``, ``multimnist``, ``celeba``); ``None`` where
the paper prints a dash.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

PAPERS = {"wu-goodman-2018": "wu_goodman_2018.json"}


@functools.lru_cache(maxsize=None)
def paper_tables(paper: str = "wu-goodman-2018") -> dict:
    """The published tables of ``paper`` (see the module docstring for the layout)."""
    text = resources.files(__name__).joinpath(PAPERS[paper]).read_text(encoding="utf-8")
    return json.loads(text)


def paper_value(table: str, figure: str, model: str, dataset: str, paper: str = "wu-goodman-2018"):
    """One published number, or None where the paper gives none (a dash, or not in the table)."""
    figures = paper_tables(paper)["tables"][table]["figures"]
    return figures.get(figure, {}).get(model, {}).get(dataset)
