"""Each dataset builds from a small source that its test creates, and trains and evaluates for a step.

prepare → train one epoch with tiny networks (the dataset's recipe where one exists) →
evaluate_run with 3 particles and 5 prior samples → finite figures and one accuracy key per
predicted modality (docs/eval.md). The transforms run is also plotted (the paper's Figs. 7–10).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mvae_cli.cli.app import app
from mvae_cli.data.celeba import ATTRIBUTES
from mvae_cli.data.prepare import prepare_dataset
from mvae_cli.engine.loop import train
from mvae_cli.eval_config import EvalConfig
from mvae_cli.evaluate.run_eval import evaluate_run
from mvae_cli.recipe import resolve_recipe
from tests.data.celeba_fixture import make_tiny_celeba
from tests.data.conftest import write_fake_mnist

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
TINY = ["epochs=1", "model.hidden=16", "model.latent_dim=4", "batch_size=8"]
SIZES = {"train": 32, "valid": 8, "test": 8}
CUSTOM_SPEC = {"modalities": [
    {"name": "image", "kind": "image", "shape": [1, 8, 8]},
    {"name": "label", "kind": "categorical", "classes": 3},
    {"name": "tags", "kind": "binary"},
    {"name": "caption", "kind": "sequence", "vocab": 6},
]}

# dataset -> (recipe, prepare options, expected accuracy keys)
CASES = {
    "multimnist": ("multimnist.yaml", {"sizes": SIZES}, ["text", "text/char", "mean"]),
    "celeba": ("celeba.yaml", {}, ["attributes", *[f"attributes/{a}" for a in ATTRIBUTES], "mean"]),
    "celeba19": ("celeba19.yaml", {}, [a.lower() for a in ATTRIBUTES] + ["mean"]),
    "transforms": ("transforms-shapes.yaml", {"base": "shapes", "sizes": SIZES}, []),
    "custom": (None, {}, ["label", "tags", "tags/0", "tags/1", "tags/2", "tags/3", "caption", "caption/char", "mean"]),
}


def _custom_split(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    caption = rng.integers(0, 4, (n, 5))
    caption[:, 0] = 4  # START = vocab - 2
    caption[np.arange(n), rng.integers(1, 5, n)] = 5  # STOP = vocab - 1 (padding after it is ignored)
    return {"image": rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8), "label": rng.integers(0, 3, n),
            "tags": rng.random((n, 4)) < 0.5, "caption": caption}


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, dict]:
    """The small sources, made once: prepare options per dataset."""
    root = tmp_path_factory.mktemp("sources")
    write_fake_mnist(root / "mnist")
    celeba = make_tiny_celeba(root / "celeba", n=24)
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump(CUSTOM_SPEC, sort_keys=False))
    npz = root / "mine.npz"
    np.savez(npz, **{f"{split}_{k}": v for i, (split, n) in enumerate(SIZES.items())
                     for k, v in _custom_split(n, i).items()})
    return {"multimnist": {"source": root / "mnist"}, "celeba": {"source": celeba}, "celeba19": {"source": celeba},
            "transforms": {}, "custom": {"source": npz, "spec": spec}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sources):
    """``trained(dataset)``: the directory of a run trained for one epoch on it (once per module)."""
    root = tmp_path_factory.mktemp("runs")
    runs: dict[str, Path] = {}

    def run_of(name: str) -> Path:
        if name not in runs:
            recipe, options, _ = CASES[name]
            data = prepare_dataset(name, root / f"{name}.h5", **sources[name], **options)
            overrides = [f"data.path={data}", *TINY]
            if recipe is None:
                overrides.append(f"data.dataset={name}")
            train(resolve_recipe(RECIPES / recipe if recipe else None, overrides), root / name)
            runs[name] = root / name
        return runs[name]

    return run_of


def _numbers(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _numbers(value)
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield float(node)


@pytest.mark.parametrize("name", list(CASES))
def test_each_dataset_prepares_trains_and_evaluates(trained, name):
    run = trained(name)
    # The paired-only classifiers only where they are cheap (celeba19 would train 18 DCGANs)
    result = evaluate_run(run, EvalConfig(particles=3, prior_samples=5, baseline=name == "custom"))
    assert json.loads((run / "eval.json").read_text()) == result
    if name == "custom":  # a categorical and a binary y have classes; the sequence has none
        assert set(result["baseline"]) == set(result["chance"]) == {"label", "tags", "mean"}
    assert all(math.isfinite(v) for v in _numbers(result)), result
    assert list(result["accuracy"]) == CASES[name][2]
    assert all(0.0 <= v <= 1.0 for v in result["accuracy"].values())
    for family in ("log_px", "log_pxy", "log_px_given_y"):
        # q(z|x), q(z|x,y) and Eq. 7's q(z|y)
        assert set(result[family]) == {result["x"], "+".join([result["x"], *result["y"]]), "+".join(result["y"])}
        assert all(figure["mean"] < 0 for figure in result[family].values())


def test_plot_draws_the_transform_figures_of_a_run(trained):
    run = trained("transforms")
    result = CliRunner().invoke(app, ["plot", str(run)])
    assert result.exit_code == 0, result.output
    for name in ("from_original.png", "to_original.png", "curves.png"):
        figure = run / "figures" / name
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 5000, name
        assert f"wrote {figure}" in " ".join(result.output.split())
