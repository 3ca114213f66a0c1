import pytest
import yaml

from mvae_cli.errors import UserError
from mvae_cli.sweep.grid import expand_grid, load_sweep, point_name
from mvae_cli.tables.results import format_value


def _write(tmp_path, recipe: dict):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_grid_is_the_cartesian_product_in_order(tmp_path):
    sweep = load_sweep(_write(tmp_path, {"epochs": 3, "grid": {"supervision": [0.01, 0.1, 1], "seed": [0, 1]}}))
    assert len(sweep.points) == 6
    assert [p.name for p in sweep.points] == [
        "supervision=0.01,seed=0", "supervision=0.01,seed=1", "supervision=0.1,seed=0",
        "supervision=0.1,seed=1", "supervision=1.0,seed=0", "supervision=1.0,seed=1"]
    last = sweep.points[-1].recipe
    assert (last.supervision, last.seed, last.epochs, last.grid) == (1.0, 1, 3, {})
    assert sweep.grid_keys == ["supervision", "seed"]


def test_dotted_keys_and_overrides_reach_every_point(tmp_path):
    path = _write(tmp_path, {"grid": {"model.hidden": [16, 32], "k": [0, 1, 2]}})
    sweep = load_sweep(path, ["epochs=1", "eval.particles=5"])
    assert len(sweep.points) == 6
    assert [(p.recipe.model.hidden, p.recipe.objective.k) for p in sweep.points] == [(h, k) for h in (16, 32) for k in (0, 1, 2)]
    assert all(p.recipe.epochs == 1 and p.recipe.eval.particles == 5 for p in sweep.points)
    assert sweep.points[0].name == "model.hidden=16,k=0"


def test_grid_can_be_replaced_by_an_override(tmp_path):
    path = _write(tmp_path, {"grid": {"supervision": [0.01, 0.1], "seed": [0, 1, 2]}})
    assert len(load_sweep(path, ["grid.seed=[0]"]).points) == 2


def test_a_dotted_grid_key_can_be_replaced_by_an_override(tmp_path):
    path = _write(tmp_path, {"grid": {"model.name": ["mvae", "vae"], "data.dataset": ["mnist", "binary-mnist"]}})
    sweep = load_sweep(path, ["grid.data.dataset=[mnist]", "grid.model.hidden=[16]"])
    assert [p.name for p in sweep.points] == ["model.name=mvae,data.dataset=mnist,model.hidden=16",
                                              "model.name=vae,data.dataset=mnist,model.hidden=16"]


@pytest.mark.parametrize("recipe, message", [
    ({"epochs": 2}, "has no grid"),
    ({"grid": {}}, "has no grid"),
    ({"grid": {"supervison": [0.1]}}, "'supervison'"),
    ({"grid": {"model.depth": [2]}}, "'model.depth'"),
    ({"grid": {"model": [{"hidden": 2}]}}, "section"),
    ({"grid": {"supervision": [0.1, 1.5]}}, "supervision=1.5"),
    ({"grid": {"keep_prob": [0.0]}}, "keep_prob=0.0"),
    ({"grid": {"model.hidden": [32, "big"]}}, "model.hidden='big'"),
    ({"grid": {"seed": []}}, "'seed' has no values"),
    ({"grid": {"supervision": [1, 1.0]}}, "1.0 more than once"),
    ({"supervision": 0.1, "grid": {"keep_prob": [0.5]}}, "not both"),
    ({"epochs": 0, "grid": {"seed": [0]}}, "'epochs'"),
])
def test_bad_grids_are_errors_naming_key_and_value(tmp_path, recipe, message):
    with pytest.raises(UserError, match=None) as error:
        load_sweep(_write(tmp_path, recipe))
    assert message in str(error.value)


def test_override_of_a_grid_key_is_refused(tmp_path):
    with pytest.raises(UserError, match="grid.supervision"):
        load_sweep(_write(tmp_path, {"grid": {"supervision": [0.1]}}), ["supervision=0.2"])
    with pytest.raises(UserError, match="'epoch'"):
        load_sweep(_write(tmp_path, {"grid": {"supervision": [0.1]}}), ["epoch=2"])


def test_point_names_are_filesystem_safe():
    assert format_value("a/b c") == "a_b_c"
    assert point_name({"model.image_net": "conv", "lr": 1e-05, "eval.y": ["shape", "size"]}) == \
        "model.image_net=conv,lr=1e-05,eval.y=__shape___size__"
    assert "/" not in point_name({"data.path": "data/x.h5"})


def test_expand_grid_validates_each_combination():
    points = expand_grid({"grid": {"supervision": [0.0, 0.5]}})
    assert [p.recipe.supervision for p in points] == [0.0, 0.5]


VARIANTS = {"paper": {}, "share": {"paired_share": 0.2},
            "share+cross": {"paired_share": 0.2, "objective.cross.image:label": 1.0}}


def test_variants_are_named_sets_of_overrides_the_grid_chooses_from(tmp_path):
    sweep = load_sweep(_write(tmp_path, {"variants": VARIANTS,
                                         "grid": {"variant": ["paper", "share", "share+cross"], "supervision": [0.01, 0.1]}}))
    assert [p.name for p in sweep.points][:3] == ["variant=paper,supervision=0.01", "variant=paper,supervision=0.1",
                                                  "variant=share,supervision=0.01"]
    recipes = {p.name: p.recipe for p in sweep.points}
    assert recipes["variant=paper,supervision=0.1"].paired_share is None
    both = recipes["variant=share+cross,supervision=0.01"]
    assert (both.paired_share, both.objective.cross, both.supervision) == (0.2, {"image:label": 1.0}, 0.01)
    assert sweep.grid_keys == ["variant", "supervision"] and sweep.points[0].values["variant"] == "paper"
    again = load_sweep(_write(tmp_path, {"variants": VARIANTS, "grid": {"variant": ["paper", "share"]}}),
                       ["grid.variant=[share]"])
    assert [p.name for p in again.points] == ["variant=share"]


@pytest.mark.parametrize("recipe, message", [
    ({"grid": {"variant": ["a"]}}, "grid key 'variant' names sets of overrides, but the recipe has no `variants:`"),
    ({"variants": VARIANTS, "grid": {"variant": ["shares"]}}, "grid value variant='shares' is not a variant"),
    ({"variants": {"a": {"paired_shar": 0.2}}, "grid": {"variant": ["a"]}}, "paired_shar"),
    ({"variants": {"a": {"supervision": 0.2}}, "grid": {"variant": ["a"], "supervision": [0.1]}},
     "variant 'a' sets 'supervision', which the grid varies"),
    ({"variants": {"a": {"paired_share": 2.0}}, "grid": {"variant": ["a"]}}, "paired_share"),
    ({"variants": ["a"], "grid": {"variant": ["a"]}}, "recipe key 'variants' must map names to sets of overrides"),
])
def test_bad_variants_are_one_line_naming_what_is_wrong(tmp_path, recipe, message):
    with pytest.raises(UserError, match=None) as error:
        load_sweep(_write(tmp_path, recipe))
    assert message in str(error.value) and "\n" not in str(error.value)
