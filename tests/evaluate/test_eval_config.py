"""One EvalConfig: ``mvae eval``'s options default to it and are checked as a recipe's eval section,
and eval.json records it, so that a sweep tells a current evaluation from a stale one."""

import dataclasses
import inspect

import pytest
import typer
from typer.testing import CliRunner

from mvae_cli.cli.app import app
from mvae_cli.cli.evaluate import eval_command
from mvae_cli.errors import UserError
from mvae_cli.eval_config import NOT_RECORDED, RECORDED_SETTINGS, EvalConfig, stale_settings
from mvae_cli.recipe import check_eval, resolve_recipe
from mvae_cli.tables.results import flatten_eval

# `mvae eval --help`'s options, as users know them
OPTIONS = ["--particles", "-k", "--split", "--checkpoint", "--limit", "--prior-samples", "--x", "--y", "--seed",
           "--max-memory", "--device", "--batch-size", "--baseline", "--no-baseline", "--precision"]
NOT_SETTINGS = {"run_dir", "max_memory", "device", "batch_size"}  # how to run, not what to compute


def test_the_options_are_those_users_know():
    command = typer.main.get_command(app).commands["eval"]
    names = [name for param in command.params for name in (*param.opts, *param.secondary_opts) if name.startswith("-")]
    assert names == OPTIONS


def test_every_setting_is_an_option_whose_default_is_the_eval_configs():
    parameters = inspect.signature(eval_command).parameters
    settings = [f.name for f in dataclasses.fields(EvalConfig)]
    assert set(parameters) - NOT_SETTINGS == set(settings)
    for name in settings:
        default = parameters[name].default
        assert default == getattr(EvalConfig(), name), name  # y: None, a comma-separated list when given


@pytest.mark.parametrize("option,key,value", [
    ("--particles", "particles", "0"), ("--prior-samples", "prior_samples", "0"), ("--limit", "limit", "0"),
    ("--split", "split", "train"), ("--checkpoint", "checkpoint", "worst"), ("--precision", "precision", "fp16"),
])
def test_an_option_out_of_range_is_the_error_the_recipe_key_is(option, key, value, tmp_path):
    with pytest.raises(UserError) as recipe_error:
        resolve_recipe(None, [f"eval.{key}={value}"])
    result = CliRunner().invoke(app, ["eval", str(tmp_path), option, value])
    expected = str(recipe_error.value).replace(f"recipe key 'eval.{key}'", option)  # the same check, naming the option
    assert result.exit_code == 2 and result.output == f"Error: {expected}\n"


def test_check_eval_coerces_and_refuses_as_a_recipe_does():
    assert check_eval(EvalConfig(particles=10.0, y="label")) == EvalConfig(particles=10, y=["label"])
    with pytest.raises(UserError, match="recipe key 'eval.particles' must be int, got 'many'"):
        check_eval(EvalConfig(particles="many"))


def _recorded(config: EvalConfig) -> dict:
    """What eval.json records of ``config`` (see run_eval.evaluate_run: precision only where not fp32)."""
    values = {name: getattr(config, name) for name in RECORDED_SETTINGS}
    if values["precision"] == "fp32":
        values.pop("precision")
    return {**values, "x": "image", "y": ["label"], "baseline": {"label": 0.5}, "n_examples": 7}


@pytest.mark.parametrize("name,other", [("particles", 7), ("prior_samples", 9), ("split", "valid"),
                                        ("checkpoint", "last"), ("x", "label"), ("y", ["image"]),
                                        ("precision", "bf16")])
def test_a_recorded_setting_that_differs_makes_the_evaluation_stale(name, other):
    evaluation = _recorded(EvalConfig(x="image", y=["label"]))
    assert stale_settings(evaluation, EvalConfig(x="image", y=["label"])) == []
    assert stale_settings(evaluation, dataclasses.replace(EvalConfig(x="image", y=["label"]), **{name: other})) == [name]


def test_what_eval_json_does_not_record_never_makes_it_stale():
    evaluation = _recorded(EvalConfig())
    assert set(RECORDED_SETTINGS) | set(NOT_RECORDED) == {f.name for f in dataclasses.fields(EvalConfig)}
    assert stale_settings(evaluation, EvalConfig(limit=3, seed=4, baseline=False)) == []
    assert stale_settings(evaluation, EvalConfig(x=None, y=None)) == []  # the defaults follow from the run
    assert stale_settings(evaluation, EvalConfig(y=["label", "label"])) == []  # y as evaluated: no repeats


def test_an_eval_json_from_before_precision_existed_is_a_current_fp32_evaluation():
    old = {"particles": 100, "prior_samples": 300, "split": "test", "checkpoint": "best", "x": "image",
           "y": ["label"]}
    assert stale_settings(old, EvalConfig(particles=100, prior_samples=300)) == []
    assert stale_settings(old, EvalConfig(particles=100, prior_samples=300, precision="bf16")) == ["precision"]


def test_the_results_table_leaves_every_recorded_setting_out():
    flat = flatten_eval({**_recorded(EvalConfig(precision="bf16")), "seconds": 2.0, "seconds_by_part": {"a": 1.0},
                         "log_px": {"image": {"mean": -3.0}}})
    assert flat == {"baseline.label": 0.5, "log_px.image.mean": -3.0}
