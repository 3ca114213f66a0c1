"""objective.cross in a recipe: the MVAE family's setting, its keys checked against the dataset."""

import json

import pytest

from mvae_cli.engine.loop import train
from mvae_cli.errors import UserError
from mvae_cli.recipe import resolve_recipe
from tests.helpers import make_dataset


def _recipe(data_path, *extra):
    return resolve_recipe(None, [f"data.path={data_path}", "epochs=1", "batch_size=32", "model.hidden=16",
                                 "model.latent_dim=4", "supervision=0.5", *extra])


def test_a_run_with_cross_reconstruction_trains_and_reports_the_term(tmp_path):
    data = make_dataset(tmp_path / "tiny.h5")
    recipe = _recipe(data, "objective.cross.image:label=2")
    assert recipe.objective.cross == {"image:label": 2.0}
    train(recipe, tmp_path / "run")
    line = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert line["cross"] < 0  # 2 · log p(label | z ~ q(z | image)) on the paired rows, per example


def test_cross_reconstruction_keys_name_modalities_and_models_that_take_it(tmp_path):
    data = make_dataset(tmp_path / "tiny.h5")
    with pytest.raises(UserError, match=r"objective.cross.image:lable' must name two modalities as given:target "
                                        r"\(modalities: image, label\)"):
        train(_recipe(data, "objective.cross.image:lable=1"), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(UserError, match=r"objective.cross=\{'image:label': 1.0\} is for mvae, mvae-q"):
        _recipe(data, "model.name=vae", "objective.cross.image:label=1")
