"""Run directories: what a run is on disk, and how to load one back.

```
RUN_DIR/config.yaml    the fully resolved recipe
RUN_DIR/run.json       dataset file, modalities, the mask used and where it came from
RUN_DIR/mask.npy       bool[N_train, M], the training mask
RUN_DIR/last.pt        checkpoint after the last finished epoch
RUN_DIR/best.pt        checkpoint with the best validation ELBO
RUN_DIR/metrics.jsonl  one line per epoch
RUN_DIR/samples.png    images decoded from the prior and from each class
```
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from mvae_cli.atomic import write_text
from mvae_cli.data.format import ModalitySpec
from mvae_cli.errors import UserError
from mvae_cli.model.model import MultimodalVAE
from mvae_cli.model.registry import build
from mvae_cli.recipe import Recipe, recipe_from_dict, recipe_to_dict

CONFIG = "config.yaml"
RUNS_ROOT = Path("runs")


def build_model(recipe: Recipe, specs: list[ModalitySpec]) -> MultimodalVAE:
    """The recipe's ``model.name`` over the dataset's modalities (a recipe without one, as old run
    directories have, builds the MVAE).

    Raises:
        UserError: the model cannot be built for these modalities (named in the message).
    """
    m = recipe.model
    try:
        return build(m.name, specs, m.latent_dim, m.hidden, m.image_net, m.weights, m.likelihoods, m.private_dim)
    except ValueError as error:
        raise UserError(f"model.name={m.name}: {error}") from None


def is_run_dir(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file() and (Path(path) / "run.json").is_file()


def write_config(run_dir: Path, recipe: Recipe) -> None:
    write_text(run_dir / CONFIG, yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))


def read_config(run_dir: Path) -> Recipe:
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise UserError(f"{run_dir} is not a run directory (no {CONFIG} and run.json); train one with `mvae train`")
    return recipe_from_dict(yaml.safe_load((run_dir / CONFIG).read_text()))


def read_run_info(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "run.json").read_text())


def latest_run(root: Path = RUNS_ROOT) -> Path:
    """The most recently trained run under ``root`` (searched two levels deep, for sweeps)."""
    candidates = [p.parent for p in list(root.glob(f"*/{CONFIG}")) + list(root.glob(f"*/runs/*/{CONFIG}"))
                  if (p.parent / "run.json").is_file()]
    if not candidates:
        raise UserError(f"no run found under {root}/; train one with `mvae train` or name the run directory")
    return max(candidates, key=lambda p: (p / "run.json").stat().st_mtime)


def load_trained(run_dir: Path, checkpoint: str = "best", device: torch.device | str = "cpu"):
    """Load a run for evaluation: ``(recipe, run_info, model in eval mode)``.

    Raises:
        UserError: not a run directory, or the checkpoint is missing or damaged.
    """
    from mvae_cli.engine.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    recipe = read_config(run_dir)
    info = read_run_info(run_dir)
    path = run_dir / f"{checkpoint}.pt"
    if not path.is_file():
        raise UserError(f"{run_dir} has no {checkpoint}.pt checkpoint; train it (or resume it) first")
    state = load_checkpoint(path, map_location=device)
    specs = [ModalitySpec(**{**s, "shape": tuple(s["shape"])}) for s in info["modalities"]]
    model = build_model(recipe, specs).to(device)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise UserError(f"{path} does not fit the model its recipe builds (trained by another mvae version?); "
                        "retrain the run") from None
    model.eval()
    return recipe, info, model
