"""Whether a sweep directory that holds results may be run again with a given recipe.

Re-running is how a sweep resumes, trains further (more epochs), re-evaluates (new eval
settings) or grows (a wider grid). A recipe that changes anything else would make the points
another study's, and the tables would be rewritten without the old results: that is refused.
"""

from __future__ import annotations

from pathlib import Path

from mvae_cli.errors import UserError
from mvae_cli.recipe import migrate_legacy, recipe_from_dict, recipe_to_dict
from mvae_cli.sweep.grid import Sweep
from mvae_cli.atomic import read_json
from mvae_cli.sweep.runner import SWEEP_JSON

# Keys a finished sweep may be re-run with changed: more epochs train every point further, new
# eval settings re-evaluate, a changed grid adds or drops points, the device and the jobs do not change results.
_REVISABLE = ("epochs", "eval", "grid", "device", "jobs")


def flatten_recipe(mapping: dict, prefix: str = "") -> dict:
    """A recipe mapping as ``{dotted key: value}``; an empty mapping is a leaf (``{}``)."""
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            flat.update(flatten_recipe(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _with_defaults(raw: dict) -> dict:
    """A stored recipe with this version's defaults for the keys it predates (a key added since, at
    its default, changes nothing); as stored when this version cannot read it."""
    try:
        return recipe_to_dict(recipe_from_dict(migrate_legacy(dict(raw))))
    except Exception:  # noqa: BLE001 (any reason: compare what is there)
        return raw


def check_revision(sweep: Sweep, out: Path) -> None:
    """Refuse to re-run a sweep directory holding results with a recipe that would make them
    another study's (before anything is written: the results there stay as they are).

    Raises:
        UserError: ``out/sweep.json`` holds finished points and the recipe differs in a key
            other than those in ``_REVISABLE``, or asks for fewer epochs; naming the keys.
    """
    stored = read_json(Path(out) / SWEEP_JSON)
    if not stored or not any(p.get("status") == "finished" for p in stored.get("points", [])):
        return
    old, new = flatten_recipe(_with_defaults(stored.get("recipe", {}))), flatten_recipe(recipe_to_dict(sweep.recipe))
    changed = sorted(key for key in set(old) | set(new)
                     if old.get(key) != new.get(key) and key.split(".")[0] not in _REVISABLE)
    if isinstance(old.get("epochs"), int) and new["epochs"] < old["epochs"]:
        changed.insert(0, "epochs")
    if changed:
        shown = ", ".join(f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in changed)
        raise UserError(f"{out} holds results of another recipe ({shown}); re-run with the recipe it was made with, "
                        "or give a new --out for the changed study")
