"""``mvae recipes [NAME]``: the recipes shipped in the package, and the lookup of one by name.

The recipes are package data (``mvae_cli/recipes/*.yaml``; a clone's top-level ``recipes/`` is a
link to that folder), so an installed wheel has them: ``mvae sweep quickstart`` runs the shipped
study, ``mvae train --recipe mnist`` a shipped single run, ``mvae recipes mnist > mine.yaml`` copies
a recipe to edit.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import typer

import mvae_cli
from mvae_cli.errors import UserError

SHIPPED = Path(mvae_cli.__file__).resolve().parent / "recipes"


def shipped() -> dict[str, Path]:
    """``{name: file}`` of every shipped recipe, by name (the file's stem)."""
    return {path.stem: path for path in sorted(SHIPPED.glob("*.yaml"), key=lambda p: p.stem)}


def recipe_path(given: str | Path) -> Path:
    """The recipe file a command was given: the path itself where something is there, else the
    shipped recipe of that name (``quickstart`` or ``quickstart.yaml``, without a folder).

    Raises:
        UserError: neither a file nor the name of a shipped recipe, listing the shipped ones.
    """
    path = Path(given)
    if path.exists():
        return path
    name = path.name.removesuffix(".yaml")
    recipes = shipped()
    if path.parent == Path(".") and name in recipes:
        return recipes[name]
    raise UserError(f"recipe {given} does not exist, and no shipped recipe is called {name!r} "
                    f"(shipped: {', '.join(recipes)}; `mvae recipes` lists them)")


def summary(path: Path) -> str:
    """What a recipe is, from its leading comment: the first sentence's head, up to its first colon or
    dash (``The MVAE paper's MNIST setup (Wu & Goodman 2018, §4.1)``); empty without a comment."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text:
            break
        lines.append(text)
    head = re.split(r":\s| -- | — |\.\s+(?=[A-Z])|\.$", " ".join(lines), maxsplit=1)[0]
    return head.strip()


def describe(path: Path) -> dict[str, str]:
    """One row of the listing: ``name``, ``runs`` (1 for a single run), ``over`` (the grid keys), ``dataset``, ``model`` (the grid's values where it varies) and ``what`` it is.

    Raises:
        UserError: a recipe that does not load.
    """
    from mvae_cli.recipe import load_recipe_dict, recipe_from_dict
    from mvae_cli.sweep.grid import load_sweep

    raw = load_recipe_dict(path)
    if raw.get("grid"):
        sweep = load_sweep(path)
        recipe, runs = sweep.recipe, str(len(sweep.points))
    else:
        recipe, runs = recipe_from_dict(raw), "1"
    grid = recipe.grid

    def shown(key: str, value: str) -> str:
        return ", ".join(str(v) for v in grid[key]) if key in grid else value

    return {"name": path.stem, "runs": runs, "over": " × ".join(grid),
            "dataset": shown("data.dataset", recipe.data.dataset), "model": shown("model.name", recipe.model.name),
            "what": summary(path)}


def recipes_command(
    name: Annotated[Optional[str], typer.Argument(
        metavar="NAME", help="Print this shipped recipe (e.g. quickstart) to stdout, to copy and edit it.")] = None,
) -> None:
    """List the recipes shipped with mvae, or print one: studies for `mvae sweep NAME`, single runs for
    `mvae train --recipe NAME`.

    A study's runs are its grid's points, a model column that lists several trains each of those models (any
    model of the table can be set with model.name=...). `mvae recipes NAME > mine.yaml` copies a recipe to edit.
    """
    recipes = shipped()
    if name is not None:
        key = name.removesuffix(".yaml")
        if key not in recipes:
            raise UserError(f"no shipped recipe is called {name!r} (shipped: {', '.join(recipes)})")
        typer.echo(recipes[key].read_text(encoding="utf-8"), nl=False)
        return
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    rows = [describe(path) for path in recipes.values()]
    for title, chosen in (("studies: mvae sweep NAME", [row for row in rows if row["over"]]),
                          ("single runs: mvae train --recipe NAME (to edit one: mvae recipes NAME > mine.yaml)",
                           [row for row in rows if not row["over"]])):
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_header=False)
        table.add_column("name", no_wrap=True, style="bold")
        table.add_column("what")
        for row in chosen:
            runs = f"{row['runs']} runs over {row['over']}" if row["over"] else "one run"
            facts = f"{runs} · dataset {row['dataset']} · model {row['model']}"
            table.add_row(row["name"], escape(f"{row['what']}\n{facts}" if row["what"] else facts))
        console.print(table)
    console.print(f"shipped in {SHIPPED}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``recipes`` command to ``app``."""
    app.command("recipes")(recipes_command)
