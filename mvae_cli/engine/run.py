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

from mvae_cli import zoo
from mvae_cli.accel.linear import prepare
from mvae_cli.atomic import write_text
from mvae_cli.engine.checkpoint import load_checkpoint
from mvae_cli.data.format import ModalitySpec
from mvae_cli.data.layout import fingerprint
from mvae_cli.errors import UserError
from mvae_cli.model.model import MultimodalVAE, rescaled_weights
from mvae_cli.recipe import Recipe, parse_yaml, recipe_from_dict, recipe_to_dict

CONFIG = "config.yaml"
RUNS_ROOT = Path("runs")


def build_model(recipe: Recipe, specs: list[ModalitySpec]) -> MultimodalVAE:
    """The recipe's ``model.name`` over the dataset's modalities, from the model table (a recipe
    without one, as old run directories have, builds the MVAE), given the settings it takes.

    With ``model.rescale`` each λ_i is multiplied by :func:`~mvae_cli.model.model.rescaled_weights`'s factor.

    Raises:
        UserError: ``model.weights`` names a modality the dataset does not have, or the model cannot
            be built for these modalities (named in the message); ``MVAE_CPU_LINEAR`` names no kernel.
    """
    check_modality_keys(recipe, [s.name for s in specs])
    m = recipe.model
    own = {key: getattr(m, key) for key in zoo.SHARED_SETTINGS + tuple(zoo.entry(m.name).settings)}
    if m.rescale:
        own["weights"] = rescaled_weights(specs, m.weights)
    try:
        model = zoo.build(m.name, specs, **own)
    except ValueError as error:
        raise UserError(f"model.name={m.name}: {error}") from None
    return prepare(model)  # this CPU's linear kernel where mvae_cli.accel is on; checks MVAE_CPU_LINEAR


def check_modality_keys(recipe: Recipe, names: list[str]) -> None:
    """Recipe keys that name modalities (``model.weights``, ``eval.x``, ``eval.y``) against the
    dataset's modalities, so a typo is an error rather than a weight silently ignored.

    Raises:
        UserError: naming the key, the unknown names and the known ones.
    """
    known = ", ".join(names)
    unknown = [n for n in recipe.model.weights if n not in names]
    if unknown:
        raise UserError(f"recipe key 'model.weights' names {', '.join(map(repr, unknown))}, which the dataset "
                        f"does not have (modalities: {known})")
    for key, weight in recipe.objective.cross.items():
        given, _, target = key.partition(":")
        if given not in names or target not in names or given == target:
            raise UserError(f"recipe key 'objective.cross.{key}' must name two modalities as given:target "
                            f"(modalities: {known}), e.g. objective.cross.{names[0]}:{names[-1]}=1")
        if weight < 0:
            raise UserError(f"recipe key 'objective.cross.{key}' must be 0 or more, got {weight}")
    if recipe.eval.x is not None and recipe.eval.x not in names:
        raise UserError(f"recipe key 'eval.x' names {recipe.eval.x!r}, which the dataset does not have (modalities: {known})")
    unknown = [n for n in recipe.eval.y or [] if n not in names]
    if unknown:
        raise UserError(f"recipe key 'eval.y' names {', '.join(map(repr, unknown))}, which the dataset does not have "
                        f"(modalities: {known})")


def is_run_dir(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file() and (Path(path) / "run.json").is_file()


def write_config(run_dir: Path, recipe: Recipe) -> None:
    write_text(run_dir / CONFIG, yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))


def read_config(run_dir: Path) -> Recipe:
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise UserError(f"{run_dir} is not a run directory (no {CONFIG} and run.json); train one with `mvae train`")
    raw = parse_yaml(run_dir / CONFIG, "run config")
    if not isinstance(raw, dict):
        raise UserError(f"run config {run_dir / CONFIG} is damaged (not a mapping of recipe keys)")
    return recipe_from_dict(raw)


def read_run_info(run_dir: Path) -> dict:
    """``run.json`` as a mapping.

    Raises:
        UserError: it is missing or damaged.
    """
    path = Path(run_dir) / "run.json"
    try:
        info = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise UserError(f"{path} is missing; {run_dir} is not a complete run directory") from None
    except ValueError as error:
        raise UserError(f"{path} is damaged (not JSON: {error}); the run cannot be used") from None
    if not isinstance(info, dict) or not isinstance(info.get("dataset"), dict):
        raise UserError(f"{path} is damaged (no dataset record); the run cannot be used")
    return info


def read_mask(run_dir: Path):
    """The training mask ``bool[N_train, M]`` a run recorded (``mask.npy``).

    Raises:
        UserError: it is missing or damaged.
    """
    import numpy as np

    path = Path(run_dir) / "mask.npy"
    try:
        mask = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{path} is missing; the run cannot be resumed") from None
    except (ValueError, OSError, EOFError):
        raise UserError(f"{path} is damaged (not a saved mask); the run cannot be resumed") from None
    if mask.dtype != bool or mask.ndim != 2:
        raise UserError(f"{path} is damaged (not a bool [N, M] mask); the run cannot be resumed")
    return mask


def check_dataset(run_dir: Path, info: dict, path: Path) -> None:
    """Refuse a dataset file that is not the one the run was trained on (resume, eval).

    Runs trained before fingerprints were recorded are not checked.

    Raises:
        UserError: the file's fingerprint differs from the one in ``run.json``.
    """
    recorded = info["dataset"].get("fingerprint")
    if recorded is not None and fingerprint(path) != recorded:
        raise UserError(f"{path} has changed since {run_dir} was trained on it (its fingerprint differs); "
                        "put the original file back, or train a new run on this one")


def latest_run(root: Path = RUNS_ROOT) -> Path:
    """The most recently trained run under ``root`` (searched two levels deep, for sweeps)."""
    candidates = [p.parent for p in list(root.glob(f"*/{CONFIG}")) + list(root.glob(f"*/runs/*/{CONFIG}"))
                  if (p.parent / "run.json").is_file()]
    if not candidates:
        raise UserError(f"no run found under {root}/; train one with `mvae train` or name the run directory")
    return max(candidates, key=lambda p: (p / "run.json").stat().st_mtime)


def run_specs(info: dict) -> list[ModalitySpec]:
    """The modalities a run was trained on, from its ``run.json`` mapping."""
    return [ModalitySpec(**{**s, "shape": tuple(s["shape"])}) for s in info["modalities"]]


def load_trained(run_dir: Path, checkpoint: str = "best", device: torch.device | str = "cpu"):
    """Load a run for evaluation: ``(recipe, run_info, model in eval mode)``.

    Raises:
        UserError: not a run directory, or the checkpoint is missing or damaged.
    """
    run_dir = Path(run_dir)
    recipe = read_config(run_dir)
    info = read_run_info(run_dir)
    path = run_dir / f"{checkpoint}.pt"
    if not path.is_file():
        raise UserError(f"{run_dir} has no {checkpoint}.pt checkpoint; train it (or resume it) first")
    state = load_checkpoint(path, map_location=device)
    model = build_model(recipe, run_specs(info)).to(device)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise UserError(f"{path} does not fit the model its recipe builds (trained by another mvae version?); "
                        "retrain the run") from None
    model.eval()
    return recipe, info, model
