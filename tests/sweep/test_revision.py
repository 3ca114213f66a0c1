"""Re-running a sweep directory that holds results: which recipe changes are refused."""

import json

import pytest
import yaml

from mvae_cli.errors import UserError
from mvae_cli.recipe import recipe_to_dict
from mvae_cli.sweep.grid import load_sweep
from mvae_cli.sweep.revision import check_revision
from mvae_cli.sweep.runner import SWEEP_JSON


def _sweep(tmp_path, *overrides):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"epochs": 3, "lr": 0.001, "grid": {"supervision": [0.1, 1.0]}}))
    return load_sweep(path, list(overrides))


def _store(out, recipe: dict):
    out.mkdir(parents=True, exist_ok=True)
    (out / SWEEP_JSON).write_text(json.dumps({"recipe": recipe, "points": [{"name": "p", "status": "finished"}]}))


def test_a_key_added_since_at_its_default_is_no_change(tmp_path):
    stored = recipe_to_dict(_sweep(tmp_path).recipe)
    del stored["model"]["posterior"]  # written before model.posterior existed
    _store(tmp_path / "out", stored)
    check_revision(_sweep(tmp_path), tmp_path / "out")
    check_revision(_sweep(tmp_path, "epochs=5", "eval.particles=10"), tmp_path / "out")  # train further, re-evaluate
    check_revision(_sweep(tmp_path, "jobs=2"), tmp_path / "out")  # more processes: the same results


@pytest.mark.parametrize("overrides, named", [(["lr=0.01"], "lr: 0.001 -> 0.01"), (["epochs=2"], "epochs"),
                                              (["model.posterior=laplace", "model.name=mmvae"], "model.posterior")])
def test_a_changed_study_is_refused_naming_the_keys(tmp_path, overrides, named):
    stored = recipe_to_dict(_sweep(tmp_path).recipe)
    del stored["model"]["posterior"]
    _store(tmp_path / "out", stored)
    with pytest.raises(UserError, match="holds results of another recipe") as error:
        check_revision(_sweep(tmp_path, *overrides), tmp_path / "out")
    assert named in str(error.value)
