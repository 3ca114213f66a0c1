from pathlib import Path

import pytest

from mvae_cli.recipe import load_recipe_dict, recipe_from_dict
from mvae_cli.sweep.grid import load_sweep

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))


def test_the_study_recipes_are_shipped():
    assert {"quickstart.yaml", "mnist-supervision.yaml"} <= {p.name for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads(path):
    recipe = recipe_from_dict(load_recipe_dict(path))
    if recipe.grid:
        sweep = load_sweep(path)  # every grid value is validated too
        assert len(sweep.points) == len({p.name for p in sweep.points}) >= 1


def test_quickstart_is_a_small_supervision_study_on_shapes():
    sweep = load_sweep(RECIPES[0].parent / "quickstart.yaml")
    assert sorted({p.recipe.supervision for p in sweep.points}) == [0.01, 0.1, 1.0]
    assert sorted({p.recipe.seed for p in sweep.points}) == [0, 1, 2] and len(sweep.points) == 18
    # the paper's objective and the remedy that makes the fully paired model learn (cross reconstruction)
    assert sweep.recipe.variants["paper"] == {} and sweep.recipe.jobs == 2
    cross = [p.recipe.objective.cross for p in sweep.points if p.values["variant"] == "cross"]
    assert cross and all(c == {f"image:{a}": 100.0 for a in ("shape", "colour", "size", "xpos", "ypos")} for c in cross)
    assert all(p.recipe.data.dataset == "shapes" for p in sweep.points)
    assert sweep.recipe.eval.limit is not None and sweep.recipe.epochs <= 10


def test_mnist_supervision_is_the_papers_figure_4_setup():
    sweep = load_sweep(RECIPES[0].parent / "mnist-supervision.yaml")
    r = sweep.points[0].recipe
    assert len(sweep.points) == 30 and sweep.grid_keys == ["supervision", "seed"]
    assert sorted({p.recipe.supervision for p in sweep.points}) == [
        0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    assert (r.data.dataset, r.model.latent_dim, r.model.hidden, r.model.image_net) == ("mnist", 64, 512, "mlp")
    assert (r.lr, r.batch_size, r.epochs, r.anneal_epochs) == (1e-3, 100, 500, 200)
    assert (r.eval.particles, r.eval.prior_samples) == (1000, 5000)


def test_paper_mnist_is_the_papers_table_setup():
    sweep = load_sweep(RECIPES[0].parent / "paper-mnist.yaml")
    assert sweep.grid_keys == ["model.name", "data.binarize", "seed"] and len(sweep.points) == 10
    assert {p.recipe.model.name for p in sweep.points} == {"mvae", "jmvae", "vae", "cvae", "bivcca"}
    # BinaryMNIST is MNIST binarised dynamically, as the authors' code does
    assert {(p.recipe.data.dataset, p.recipe.data.binarize) for p in sweep.points} == {("mnist", False), ("mnist", True)}
    r = sweep.points[0].recipe
    assert (r.model.latent_dim, r.model.hidden, r.lr, r.batch_size, r.epochs, r.anneal_epochs) == (64, 512, 1e-3, 100, 500, 200)
    assert (r.supervision, r.model.weights, r.eval.particles, r.eval.prior_samples, r.eval.limit) == (1.0, {}, 1000, 5000, None)


def test_paper_fig3_varies_k_over_three_seeds_on_a_many_modality_dataset():
    sweep = load_sweep(RECIPES[0].parent / "paper-fig3-shapes.yaml")
    assert sorted({p.recipe.objective.k for p in sweep.points}) == [0, 1, 5, 10, 25, 50]
    assert sorted({p.recipe.seed for p in sweep.points}) == [0, 1, 2]


def test_mnist_remedies_compares_the_remedies_alone_and_combined():
    sweep = load_sweep(RECIPES[0].parent / "mnist-remedies.yaml")
    assert sweep.grid_keys == ["variant", "supervision", "seed"] and len(sweep.points) == 54
    recipes = {p.name: p.recipe for p in sweep.points}
    paper, both = recipes["variant=paper,supervision=0.01,seed=0"], recipes["variant=share+cross,supervision=0.01,seed=0"]
    assert (paper.paired_share, paper.objective.cross, paper.objective.align, paper.model.rescale) == (None, {}, 0.0, False)
    assert (both.paired_share, both.objective.cross) == (0.2, {"image:label": 1.0})
    assert recipes["variant=rescale,supervision=0.1,seed=2"].model.rescale
    assert (paper.data.dataset, paper.model.hidden, paper.model.latent_dim, paper.epochs) == ("mnist", 512, 64, 10)
