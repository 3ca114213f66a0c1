"""The shipped recipes: one folder in the package (the clone's recipes/ points to it), listed by
`mvae recipes`, printed by `mvae recipes NAME`, and run by name with `mvae sweep NAME`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mvae_cli.cli.app import app
from mvae_cli.cli.recipes import SHIPPED, recipe_path, shipped, summary
from mvae_cli.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_the_clones_recipes_folder_is_the_packages_one():
    # One copy: the wheel ships mvae_cli/recipes, and recipes/ (README, tests) is that folder.
    assert SHIPPED == ROOT / "mvae_cli" / "recipes"
    assert (ROOT / "recipes").resolve() == SHIPPED
    assert set(shipped()) == {p.stem for p in (ROOT / "recipes").glob("*.yaml")} >= {"quickstart", "mnist"}


def test_recipes_lists_every_shipped_recipe_with_its_runs():
    result = _run("recipes")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name in shipped():
        assert any(line.split()[:1] == [name] for line in lines), name
    assert "18 runs over variant × supervision × seed · dataset shapes · model mvae" in result.output  # quickstart
    assert "model mvae, jmvae, vae, cvae, bivcca" in result.output  # paper-mnist's grid over model.name


def test_recipes_name_prints_the_file_as_it_is():
    for name in ("quickstart", "quickstart.yaml"):
        result = _run("recipes", name)
        assert result.exit_code == 0 and result.output == (SHIPPED / "quickstart.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(result.output)["grid"]["seed"] == [0, 1, 2]


def test_an_unknown_recipe_name_is_one_line_listing_the_shipped_ones():
    result = _run("recipes", "quickstrat")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "quickstrat" in result.output and "quickstart" in result.output


def test_a_path_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert recipe_path("quickstart") == SHIPPED / "quickstart.yaml"
    assert recipe_path("quickstart.yaml") == SHIPPED / "quickstart.yaml"
    Path("quickstart.yaml").write_text("grid: {seed: [0]}\n")
    assert recipe_path("quickstart.yaml") == Path("quickstart.yaml")  # the user's own file
    with pytest.raises(UserError, match=r"elsewhere/quickstart.yaml does not exist.*shipped: .*quickstart"):
        recipe_path("elsewhere/quickstart.yaml")  # a folder was named: no fallback to the shipped one


def test_sweep_runs_a_shipped_recipe_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _run("sweep", "quickstart", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.output.count("to train") == 18
    assert "sweeps/quickstart/runs/variant=paper,supervision=0.01,seed=0" in result.output
    assert not Path("sweeps").exists()  # a dry run writes nothing
    missing = _run("sweep", "nope")
    assert missing.exit_code == 2 and "no shipped recipe is called 'nope'" in missing.output


def test_summary_is_the_head_of_the_first_sentence(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("# The paper's Fig. 4(a) on MNIST (§6.1): accuracy against\n# supervision. More.\n#\n# Usage\n"
                      "epochs: 1\n")
    assert summary(recipe) == "The paper's Fig. 4(a) on MNIST (§6.1)"
    recipe.write_text("# The embedded shapes dataset. An RGB image\nepochs: 1\n")
    assert summary(recipe) == "The embedded shapes dataset"
    recipe.write_text("epochs: 1\n")
    assert summary(recipe) == ""
