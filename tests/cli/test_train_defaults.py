"""`mvae train` as a new user meets it: defaults that learn (the quick start's), shown in --help; one
grid point of a study recipe with --point; "did you mean" for a misspelt key; checkpoints stated and
--keep to keep one."""

import pytest
import yaml
from typer.testing import CliRunner

from mvae_cli.cli.app import app
from mvae_cli.cli.recipes import recipe_path
from mvae_cli.cli.train_recipe import TRAIN_DEFAULTS, train_recipe
from mvae_cli.errors import UserError
from mvae_cli.recipe import get_dotted, load_recipe_dict, recipe_to_dict, resolve_recipe
from tests.helpers import make_dataset

runner = CliRunner()
QUICKSTART = recipe_path("quickstart")
SMALL = ["epochs=1", "model.hidden=16", "model.latent_dim=4", "batch_size=64"]


def _text(result) -> str:
    return " ".join(result.output.split())


def test_the_defaults_are_the_quick_starts_networks_and_schedule():
    quickstart = load_recipe_dict(QUICKSTART)
    assert {key: get_dotted(quickstart, key) for key in TRAIN_DEFAULTS} == TRAIN_DEFAULTS
    recipe = recipe_to_dict(train_recipe(None, [], {}, None))
    assert {key: get_dotted(recipe, key) for key in TRAIN_DEFAULTS} == TRAIN_DEFAULTS
    schema = recipe_to_dict(resolve_recipe(None))  # the schema's own defaults stay the paper-sized ones
    assert (schema["model"]["latent_dim"], schema["model"]["hidden"]) == (64, 512)
    # an option or an override still wins over a default
    recipe = train_recipe(None, ["model.hidden=32"], {"epochs": 2}, None)
    assert (recipe.model.hidden, recipe.epochs, recipe.model.latent_dim) == (32, 2, 16)


def test_help_shows_every_default():
    text = " ".join(runner.invoke(app, ["train", "--help"]).output.replace("│", " ").split())
    assert "model.latent_dim=16 model.hidden=64 epochs=5 batch_size=50 lr=0.003 anneal_epochs=1" in text
    assert "without one 5" in text and "without one 0" in text and "every example shows every modality" in text
    assert "[default: both]" in text and "--point" in text


def test_a_recipe_with_a_grid_says_how_to_pick_a_point_and_point_picks_it():
    with pytest.raises(UserError) as error:
        train_recipe(QUICKSTART, [], {}, None, shown="quickstart")
    assert str(error.value) == ("recipe quickstart has a grid (variant: paper, cross; supervision: 0.01, 0.1, 1.0; seed: "
                                "0, 1, 2): train one of its points with --point variant=paper,supervision=0.01,seed=0, "
                                "or the whole study with `mvae sweep quickstart`")
    recipe = train_recipe(QUICKSTART, ["epochs=2"], {}, "variant=cross,supervision=1,seed=2")
    assert (recipe.supervision, recipe.seed, recipe.epochs, recipe.grid) == (1.0, 2, 2, {})
    assert recipe.objective.cross["image:shape"] == 100.0  # the variant's overrides applied
    assert recipe.model.hidden == 64  # the rest of the recipe as it is


@pytest.mark.parametrize("point, extra, message", [
    ("variant=paper,supervision=0.2,seed=0", {}, "the grid of quickstart has no supervision=0.2 (supervision: 0.01, 0.1, 1.0)"),
    ("variant=paper,supervision=0.1", {}, "matches 3 grid points: also give seed (0, 1, 2), e.g. --point "
     "variant=paper,supervision=0.1,seed=0"),
    ("supervison=0.1", {}, "'supervison' is not a key of the grid of quickstart"),
    ("variant=paper,supervision=0.1,seed=0", {"seed": 3}, "--seed sets seed, which the grid of quickstart varies"),
])
def test_a_point_that_is_not_one_is_one_clear_error(point, extra, message):
    with pytest.raises(UserError, match="^") as error:
        train_recipe(QUICKSTART, [], extra, point, flags={"seed": "--seed"}, shown="quickstart")
    assert message in str(error.value)


def test_point_without_a_grid_is_refused(tmp_path):
    single = tmp_path / "single.yaml"
    single.write_text(yaml.safe_dump({"epochs": 1}))
    with pytest.raises(UserError, match="has no grid, so there is no point to pick"):
        train_recipe(single, [], {}, "seed=0")
    with pytest.raises(UserError, match="no --recipe was given"):
        train_recipe(None, [], {}, "seed=0")


def test_a_misspelt_key_gets_a_did_you_mean(tmp_path):
    result = runner.invoke(app, ["train", "epochz=3"])
    assert result.exit_code == 2 and "unknown recipe key 'epochz' in override 'epochz=3'; did you mean 'epochs'?" \
        in _text(result)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  hiden: 3\n")
    result = runner.invoke(app, ["train", "--recipe", str(recipe)])
    assert result.exit_code == 2 and "did you mean 'model.hidden'?" in _text(result)
    with pytest.raises(UserError, match="did you mean 'anneal_epochs'"):
        resolve_recipe(None, ["anneal=2"])
    with pytest.raises(UserError) as error:
        resolve_recipe(None, ["xyz=1"])
    assert "did you mean" not in str(error.value)  # nothing close: no guess


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny.h5")


def test_the_summary_states_the_checkpoints_and_keep_leaves_one(data_path, tmp_path):
    both = tmp_path / "both"
    result = runner.invoke(app, ["train", "--data", str(data_path), "--out", str(both), *SMALL])
    assert result.exit_code == 0, result.output
    size = (both / "best.pt").stat().st_size / 1e3
    assert f"checkpoints: best.pt {size:.0f} kB, last.pt" in _text(result) and "--keep best|last keeps one" in _text(result)

    best = tmp_path / "best"
    result = runner.invoke(app, ["train", "--data", str(data_path), "--out", str(best), "--keep", "best", *SMALL])
    assert result.exit_code == 0 and (best / "best.pt").is_file() and not (best / "last.pt").exists()
    assert "checkpoints: best.pt" in _text(result) and "last.pt" not in _text(result).split("checkpoints:")[1][:30]
    result = runner.invoke(app, ["train", "--resume", str(best), "--epochs", "2"])
    assert result.exit_code == 2 and "kept only best.pt (trained with --keep best), so it cannot be resumed" \
        in _text(result)

    last = tmp_path / "last"
    result = runner.invoke(app, ["train", "--data", str(data_path), "--out", str(last), "--keep", "last", *SMALL])
    assert result.exit_code == 0 and (last / "last.pt").is_file() and not (last / "best.pt").exists()
    result = runner.invoke(app, ["eval", str(last), "--particles", "5", "--prior-samples", "10", "--no-baseline"])
    assert result.exit_code == 2 and "has no best.pt, only last.pt (`mvae train --keep last` keeps that one alone): " \
        "evaluate it with --checkpoint last" in _text(result)
    result = runner.invoke(app, ["eval", str(last), "--checkpoint", "last", "--particles", "5", "--prior-samples", "10",
                                 "--no-baseline"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", "--data", str(data_path), "--keep", "one", *SMALL])
    assert result.exit_code == 2 and "--keep must be one of both, best, last" in _text(result)


def test_the_help_reads_the_defaults_without_importing_torch():
    import subprocess
    import sys

    code = "import sys, mvae_cli.cli.app; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"


def test_a_sweep_takes_its_jobs_from_the_recipe_unless_the_command_line_gives_them(tmp_path, monkeypatch):
    from mvae_cli.sweep import runner as sweep_runner

    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path / "d.h5", sizes=(60, 20, 20))
    seen = []

    def fake_run_sweep(sweep, out, *, jobs=1, **kw):
        seen.append(jobs)
        raise UserError("stopped here by the test")

    monkeypatch.setattr(sweep_runner, "run_sweep", fake_run_sweep)
    recipe = {"data": {"path": "d.h5"}, "epochs": 1, "jobs": 2, "grid": {"seed": [0, 1]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(recipe))
    for extra, expected in (([], 2), (["--jobs", "3"], 3)):
        result = runner.invoke(app, ["sweep", "s.yaml", "--out", "sweeps/s", *extra])
        assert result.exit_code == 2 and "stopped here by the test" in result.output
        assert seen[-1] == expected
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**recipe, "jobs": 0}))
    result = runner.invoke(app, ["sweep", "bad.yaml", "--out", "sweeps/b"])
    assert result.exit_code == 2 and "jobs" in result.output
