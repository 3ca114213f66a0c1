"""Sweep recipes: a training recipe plus ``grid:`` (recipe key -> values), expanded into points.

Every value is validated by building the recipe of a point that holds it, so a value out of
range is an error naming the grid key and the value, before anything is trained.

A grid varies single keys, every combination of their values. Settings that go together (the
remedies of a study: ``paired_share=0.2`` alone, cross reconstruction alone, both) are named sets
of overrides under ``variants:``, and the grid key ``variant`` lists the names to try::

    variants:
      paper: {}
      share: {paired_share: 0.2}
      share+cross: {paired_share: 0.2, objective.cross.image:label: 1.0}
    grid:
      variant: [paper, share, share+cross]
      supervision: [0.01, 0.1]
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mvae_cli.errors import UserError
from mvae_cli.tables.results import format_value
from mvae_cli.recipe import (DICT_KEYS, LEGACY_KEYS, Recipe, foreign_settings, get_dotted, known_keys,
                             load_recipe_dict, model_settings,
                             migrate_legacy, parse_override, recipe_from_dict, recipe_to_dict, set_dotted,
                             set_key, unknown_key)

_SECTIONS = {"data", "model", "eval", *(key.rstrip(".") for key in DICT_KEYS)}


@dataclass
class Point:
    """One grid point: its values, its run-directory name and its training recipe.

    Attributes:
        name: readable and filesystem-safe, e.g. ``supervision=0.01,seed=0``.
        values: grid key -> the validated value of this point.
        recipe: the training recipe of this point (``grid`` emptied).
    """

    name: str
    values: dict[str, Any]
    recipe: Recipe


@dataclass
class Sweep:
    """A validated sweep recipe and its points, in grid order (the last key varies fastest)."""

    recipe: Recipe
    points: list[Point]
    source: str = ""
    overrides: list[str] = field(default_factory=list)

    @property
    def grid_keys(self) -> list[str]:
        return list(self.recipe.grid)


def point_name(values: dict[str, Any]) -> str:
    """``{"supervision": 0.01, "seed": 0}`` -> ``supervision=0.01,seed=0``."""
    return ",".join(f"{key}={format_value(value)}" for key, value in values.items())


VARIANT = "variant"  # the grid key whose values name sets of overrides under ``variants:``


def _check_grid_key(key: str, variants: dict | None = None) -> None:
    if key == VARIANT:
        if not variants:
            raise UserError("grid key 'variant' names sets of overrides, but the recipe has no `variants:` "
                            "(e.g. `variants: {paper: {}, share: {paired_share: 0.2}}`)")
        return
    if key in _SECTIONS:
        raise UserError(f"grid key {key!r} is a section of the recipe; grid one of its keys, such as {key}.<name>")
    if key == "grid" or key.startswith("grid."):
        raise UserError("grid key 'grid' is not allowed: a grid cannot vary itself")
    if key not in known_keys() and key not in LEGACY_KEYS and not key.startswith(DICT_KEYS):
        raise unknown_key(key, known_keys(), "in grid")


def _point_recipe(raw: dict, values: dict[str, Any], models: tuple[str, ...] = (),
                  variants: dict[str, dict] | None = None) -> Recipe:
    """The recipe of one point. Where the grid varies ``model.name`` over ``models``, a setting of
    the base recipe that one of them takes is left at its default for the points of the others (an
    MVAE point of a grid over mvae and jmvae ignores objective.alpha); any other setting a point's
    model does not take is refused. A ``variant`` value applies its set of overrides first."""
    raw = copy.deepcopy(raw)
    raw.pop("grid", None)
    raw.pop("variants", None)
    if VARIANT in values:
        for key, value in variants[values[VARIANT]].items():
            if key in values:
                raise UserError(f"variant {values[VARIANT]!r} sets {key!r}, which the grid varies")
            set_key(raw, key, value)
    for key, value in values.items():
        if key != VARIANT:
            set_dotted(raw, key, value)
    recipe = recipe_from_dict(raw, check_settings=False)
    for key, _ in foreign_settings(recipe):
        section, _, name = key.partition(".")
        if key not in values and any(name in model_settings(section, m) for m in models):
            set_dotted(raw, key, getattr(type(getattr(recipe, section))(), name))
    return recipe_from_dict(raw)


def check_variants(variants: Any) -> dict[str, dict]:
    """``variants:`` as ``{name: {recipe key: value}}``, each key known (values are checked with the points).

    Raises:
        UserError: not a mapping of mappings, or a key that is not a recipe key.
    """
    if not isinstance(variants, dict) or not variants:
        raise UserError("recipe key 'variants' must map names to sets of overrides, e.g. "
                        "`variants: {paper: {}, share: {paired_share: 0.2}}`")
    checked = {}
    for name, overrides in variants.items():
        overrides = overrides or {}
        if not isinstance(overrides, dict):
            raise UserError(f"variant {name!r} must be a mapping of recipe keys to values, got {overrides!r}")
        for key in overrides:
            if key not in known_keys() and key not in LEGACY_KEYS and not str(key).startswith(DICT_KEYS):
                raise unknown_key(str(key), known_keys(), f"in variant {name!r}")
        checked[str(name)] = {str(k): v for k, v in overrides.items()}
    return checked


def expand_grid(raw: dict) -> list[Point]:
    """Expand the ``grid`` of a raw recipe mapping into validated points.

    Args:
        raw: a recipe mapping (as read from YAML, overrides applied) with a non-empty ``grid``, and
            ``variants`` where the grid key ``variant`` chooses among them.

    Returns:
        The points of the Cartesian product of the grid's lists, in order.

    Raises:
        UserError: no grid, a grid key that is not a recipe key, an empty or repeated list,
            or a value (or a combination of values) the recipe refuses, naming key and value.
    """
    variants = check_variants(raw["variants"]) if raw.get("variants") is not None else None
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict) or not grid:
        raise UserError("the recipe has no grid: a sweep recipe lists the values to vary under `grid:`, "
                        "e.g. `grid: {supervision: [0.01, 0.1, 1.0]}`; train a single recipe with `mvae train`")
    models = tuple(grid.get("model.name") or ()) if isinstance(grid.get("model.name"), list) else ()
    base = recipe_to_dict(recipe_from_dict(raw, check_settings=not models))  # validates every other key first
    levels: dict[str, list] = {}
    for key, values in grid.items():
        key = str(key)
        _check_grid_key(key, variants)
        if not isinstance(values, list):
            values = [values]
        if not values:
            raise UserError(f"grid key {key!r} has no values")
        checked = []
        for value in values:
            if key == VARIANT and str(value) not in variants:
                raise UserError(f"grid value variant={value!r} is not a variant of the recipe "
                                f"(variants: {', '.join(variants)})")
            try:
                recipe = _point_recipe(raw, {key: str(value) if key == VARIANT else value}, models, variants)
            except UserError as error:
                raise UserError(f"grid value {key}={value!r} is not allowed: {error}") from None
            checked.append(str(value) if key == VARIANT else get_dotted(recipe_to_dict(recipe), LEGACY_KEYS.get(key, key)))
        names = [format_value(v) for v in checked]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise UserError(f"grid key {key!r} lists {', '.join(repeated)} more than once")
        levels[key] = checked
    points = []
    for combination in itertools.product(*levels.values()):
        values = dict(zip(levels, combination))
        try:
            recipe = _point_recipe(base, values, models, variants)
        except UserError as error:
            raise UserError(f"grid point {point_name(values)} is not allowed: {error}") from None
        points.append(Point(point_name(values), values, recipe))
    return points


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``KEY=VALUE`` overrides (as ``mvae train`` does) to a copy of ``raw``.

    A key the grid varies is refused: override the list itself with ``grid.KEY=[...]``.
    """
    raw = copy.deepcopy(raw)
    grid = raw.get("grid") or {}
    for text in overrides:
        key, value = parse_override(text)
        if key not in known_keys() and key not in LEGACY_KEYS and not key.startswith(DICT_KEYS + ("grid.",)):
            raise unknown_key(key, known_keys(), f"in override {text!r}")
        if isinstance(grid, dict) and key in grid:
            raise UserError(f"override {text!r} sets {key!r}, which the grid varies; "
                            f"replace its values with grid.{key}=[...] instead")
        set_key(raw, key, value)
    return raw


def load_sweep(path: str | Path, overrides: list[str] = ()) -> Sweep:
    """Read a sweep recipe, apply overrides to every point and expand the grid.

    Raises:
        UserError: as :func:`expand_grid`, or an unreadable recipe or bad override.
    """
    raw = apply_overrides(migrate_legacy(load_recipe_dict(path)), list(overrides))
    if not raw.get("grid"):
        raise UserError(f"recipe {path} has no grid: a sweep recipe lists the values to vary under `grid:`, "
                        "e.g. `grid: {supervision: [0.01, 0.1, 1.0]}`; train a single recipe with `mvae train`")
    points = expand_grid(raw)
    return Sweep(recipe_from_dict(raw), points, str(path), list(overrides))
