"""The recipe ``mvae train`` trains: the quick start's settings without ``--recipe``, one grid point
(``--point``) of a study recipe, or a single recipe as it is.

The recipe schema's own defaults (a 64-dimensional latent, 512 hidden units, no β annealing) are
the paper-sized networks that the shipped recipes build on; on the embedded shapes data they
collapse (no active unit). Without a recipe ``mvae train`` therefore starts from
:data:`TRAIN_DEFAULTS`, the networks and schedule of ``recipes/quickstart.yaml`` (a test keeps the
two equal), which learn on that data in about a minute on a laptop CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mvae_cli.errors import UserError

# The recipe and the grid import torch (through the model table): imported where used, so that
# `mvae --help`, which reads TRAIN_DEFAULTS for the help text, stays fast.

TRAIN_DEFAULTS: dict[str, Any] = {"model.latent_dim": 16, "model.hidden": 64, "epochs": 5, "batch_size": 50,
                                  "lr": 0.003, "anneal_epochs": 1}


def defaults_text() -> str:
    """:data:`TRAIN_DEFAULTS` as ``KEY=VALUE`` words, for the help."""
    return " ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in TRAIN_DEFAULTS.items())


def train_recipe(path: Path | None, overrides: list[str], extra: dict[str, Any], point: str | None,
                 flags: dict[str, str] | None = None, shown: str | None = None):
    """The validated recipe of one run.

    Args:
        path: ``--recipe`` (None: :data:`TRAIN_DEFAULTS`).
        overrides: ``KEY=VALUE`` arguments, applied last.
        extra: recipe keys set by options (``epochs``, ``data.path``), applied before the overrides.
        point: ``--point KEY=VALUE,...``: the grid point of a recipe with a grid.
        flags: the option that set each key of ``extra`` (``{"seed": "--seed"}``), for errors.
        shown: how the user named the recipe (``quickstart``), for errors; default ``path``.

    Returns:
        The :class:`~mvae_cli.recipe.Recipe`.

    Raises:
        UserError: a recipe with a grid and no (or no matching) ``--point``; ``--point`` without a grid;
            an option that sets a key the grid varies; anything the recipe refuses.
    """
    from mvae_cli.recipe import load_recipe_dict, migrate_legacy, resolve_recipe

    if path is None:
        if point:
            raise UserError("--point picks a grid point of a --recipe that has a grid; no --recipe was given")
        return resolve_recipe(None, overrides, {**TRAIN_DEFAULTS, **extra})
    raw = migrate_legacy(load_recipe_dict(path))
    if not raw.get("grid"):
        if point:
            raise UserError(f"--point: recipe {path} has no grid, so there is no point to pick; drop --point")
        return resolve_recipe(path, overrides, extra)
    return _grid_point(raw, Path(shown) if shown else path, overrides, extra, point, flags or {})


def _grid_point(raw: dict, path: Path, overrides: list[str], extra: dict[str, Any], point: str | None,
                flags: dict[str, str]):
    from mvae_cli.recipe import LEGACY_KEYS, parse_override, set_dotted
    from mvae_cli.sweep.grid import apply_overrides, expand_grid, point_name

    grid = raw["grid"] if isinstance(raw["grid"], dict) else {}
    for key, value in extra.items():
        if key in grid:
            raise UserError(f"{flags.get(key, key)} sets {key}, which the grid of {path} varies: "
                            f"pick its value with --point {key}=VALUE")
        set_dotted(raw, key, value)
    points = expand_grid(apply_overrides(raw, overrides))
    levels = {key: [] for key in points[0].values}
    for p in points:
        for key, value in p.values.items():
            if value not in levels[key]:
                levels[key].append(value)
    described = "; ".join(f"{key}: {', '.join(str(v) for v in values)}" for key, values in levels.items())
    how = (f"train one of its points with --point {points[0].name}, or the whole study with "
           f"`mvae sweep {path}`")
    if not point:
        raise UserError(f"recipe {path} has a grid ({described}): {how}")
    wanted = {}
    for part in point.split(","):
        key, value = parse_override(part)
        key = LEGACY_KEYS.get(key, key)
        if key not in levels:
            raise UserError(f"--point: {key!r} is not a key of the grid of {path} ({described})")
        wanted[key] = value
    chosen = [p for p in points if all(p.values[k] == v for k, v in wanted.items())]
    if not chosen:
        missing = next(k for k, v in wanted.items() if v not in levels[k])
        raise UserError(f"--point: the grid of {path} has no {missing}={wanted[missing]} "
                        f"({missing}: {', '.join(str(v) for v in levels[missing])})")
    if len(chosen) > 1:
        left = [k for k in levels if k not in wanted]
        raise UserError(f"--point {point} matches {len(chosen)} grid points: also give "
                        + ", ".join(f"{k} ({', '.join(str(v) for v in levels[k])})" for k in left)
                        + f", e.g. --point {point_name(chosen[0].values)}")
    return chosen[0].recipe
