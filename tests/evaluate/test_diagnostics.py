"""Latent diagnostics wired to the model interface: known dead units and dead encoders, in the
library, per epoch in metrics.jsonl, in eval.json, and as warnings of train, eval and sweep."""

import io
import json
import math

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from mvae_cli.cli.app import app
from mvae_cli.data.format import read_dataset
from mvae_cli.engine import loop
from mvae_cli.engine.checkpoint import load_checkpoint
from mvae_cli.engine.data import SplitData
from mvae_cli.engine.run import load_trained
from mvae_cli.evaluate.collapse import REMEDIES, remedy_lines
from mvae_cli.evaluate.diagnostics import (LatentDiagnosticsHook, findings_from_flat, flat_latent, gaussian_parameters,
                                           last_epoch_findings, latent_diagnostics, unimodal_names, warnings_from_flat)
from mvae_cli.model.model import MultimodalVAE
from mvae_cli.zoo import build
from mvae_cli.recipe import resolve_recipe
from tests.helpers import IMAGE_LABEL, make_dataset

D = 4
# A unit whose expert is N(0, 1) times the prior expert: N(0, ½), KL = ½(½ − 1 + ln 2) ≈ 0.0966 nats.
DEAD_KL = 0.5 * (0.5 - 1 + math.log(2))
runner = CliRunner()


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("diag") / "tiny.h5", sizes=(200, 60, 60))


def _kill(model, units):
    """Zero the image encoder's mu and logvar rows of ``units``: those units ignore the image."""
    last = model.encoders["image"].net[-1]  # Linear(hidden, 2D): rows 0..D-1 mu, D..2D-1 logvar
    with torch.no_grad():
        for u in units:
            for row in (u, D + u):
                last.weight[row].zero_()
                last.bias[row] = 0.0
    return last


def _valid(data_path):
    dataset = read_dataset(data_path)
    return dataset, SplitData(dataset, "valid", torch.device("cpu"), None, 1 << 28)


def test_one_dead_unit_is_counted_with_its_closed_form_kl(data_path):
    torch.manual_seed(0)
    model = MultimodalVAE(IMAGE_LABEL, latent_dim=D, hidden=16)
    last = _kill(model, [2])
    with torch.no_grad():
        last.weight[:D] *= 200  # the live units carry the image strongly
    dataset, valid = _valid(data_path)
    with dataset:
        report = latent_diagnostics(model, valid, limit=50)
        assert model.training  # the caller's mode is restored
        batch = valid.batch(torch.arange(50))
        model.eval()
        with torch.no_grad():
            mu = model.posterior(batch, ["image"]).mean  # brute force: the posterior means themselves
    brute = mu.double().var(dim=0)
    assert brute[2] == 0.0 and bool((brute[[0, 1, 3]] > 0.01).all())
    assert report["image"]["active_units"] == 3 and report["image"]["latent_dim"] == D
    assert report["image"]["kl_per_unit"][2] == pytest.approx(DEAD_KL, abs=1e-7)
    assert set(report) == {"image", "label"}


def test_a_dead_encoder_has_no_active_unit_zero_information_and_warns(data_path):
    torch.manual_seed(0)
    model = MultimodalVAE(IMAGE_LABEL, latent_dim=D, hidden=16)
    _kill(model, range(D))
    dataset, valid = _valid(data_path)
    with dataset:
        report = latent_diagnostics(model, valid)
    image = report["image"]
    assert image["active_units"] == 0
    assert image["kl"] == pytest.approx(D * DEAD_KL, abs=1e-6)  # 0.386 nats: above 0.1, still collapse
    assert image["mutual_information"] == pytest.approx(0.0, abs=1e-9)
    flat = flat_latent(report)
    assert flat["latent.image.kl"] == image["kl"] and "latent.image.kl_per_unit" not in flat
    image_only = {k: v for k, v in flat.items() if k.startswith("latent.image.")}
    lines = warnings_from_flat(image_only)
    assert len(lines) == 1 and "q(z | image) has 0 of 4 active units and KL 0.386" in lines[0]
    assert remedy_lines(findings_from_flat(image_only)) == [f"against collapse and chance: {REMEDIES}"]
    for remedy in ("beta=0.5", "free_bits=0.25", "model.weights.", "model.likelihoods."):
        assert remedy in REMEDIES


def test_unimodal_posteriors_follow_the_model_interface():
    assert unimodal_names(build("mvae", IMAGE_LABEL, D, 16)) == ["image", "label"]
    assert unimodal_names(build("vae", IMAGE_LABEL, D, 16)) == ["image"]
    assert unimodal_names(build("cvae", IMAGE_LABEL, D, 16)) == []  # q(z | x, y) only


@pytest.mark.parametrize("fusion", ["moe", "mopoe"])
def test_a_mixture_given_one_modality_is_that_expert(fusion):
    torch.manual_seed(0)
    model = MultimodalVAE(IMAGE_LABEL, latent_dim=D, hidden=16, fusion=fusion).eval()
    batch = {"image": torch.rand(5, 1, 8, 8), "label": torch.arange(5) % 4}
    mu, logvar = model.encoders["image"](batch["image"])
    got = gaussian_parameters(model.posterior(batch, ["image"]))
    if fusion == "mopoe":  # the subset {image} is a product with the prior expert N(0, 1)
        precision = 1 + torch.exp(-logvar)
        mu, logvar = mu * torch.exp(-logvar) / precision, -torch.log(precision)
    torch.testing.assert_close(got[0], mu, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(got[1], logvar, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="mixture"):
        gaussian_parameters(model.posterior(batch, ["image", "label"]))


def _dead_image_build(recipe, specs):
    """The recipe's model with a dead, frozen image encoder: q(z | image) is N(0, ½) in every epoch."""
    model = build(recipe.model.name, specs, recipe.model.latent_dim, recipe.model.hidden)
    last = _kill(model, range(recipe.model.latent_dim))
    last.requires_grad_(False)
    return model


def _recipe(data_path, *extra):
    return resolve_recipe(None, [f"data.path={data_path}", "epochs=1", "batch_size=32", "model.hidden=16",
                                 f"model.latent_dim={D}", *extra])


@pytest.fixture(scope="module")
def dead_run(data_path, tmp_path_factory):
    run = tmp_path_factory.mktemp("dead") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop, "build_model", _dead_image_build)
        loop.train(_recipe(data_path), run, hooks=[LatentDiagnosticsHook()])
    return run


def test_metrics_report_the_dead_encoder_and_equal_the_diagnostics_of_the_weights(dead_run, data_path):
    (line,) = [json.loads(l) for l in (dead_run / "metrics.jsonl").read_text().splitlines()]
    assert line["latent.image.active_units"] == 0 and line["latent.image.latent_dim"] == D
    assert line["latent.image.kl"] == pytest.approx(D * DEAD_KL, abs=1e-6)
    assert line["latent.image.mutual_information"] == pytest.approx(0.0, abs=1e-9)
    # The label posterior's numbers are those of the final weights on the first valid rows (60 < 1,000).
    recipe, _, model = load_trained(dead_run, "last", torch.device("cpu"))
    dataset, valid = _valid(data_path)
    with dataset:
        report = latent_diagnostics(model, valid, limit=1000)
    assert line["latent.label.kl"] == pytest.approx(report["label"]["kl"], rel=1e-6)
    assert line["latent.label.active_units"] == report["label"]["active_units"]
    assert any("q(z | image) has 0 of 4 active units" in f.sentence for f in last_epoch_findings(dead_run))


def test_eval_json_holds_the_latent_and_mvae_eval_prints_the_warning(dead_run):
    result = runner.invoke(app, ["eval", str(dead_run), "--particles", "5", "--prior-samples", "20",
                                 "--limit", "40", "--no-baseline"])
    assert result.exit_code == 0, result.output
    evaluation = json.loads((dead_run / "eval.json").read_text())
    image = evaluation["latent"]["image"]
    assert image["active_units"] == 0 and image["kl"] == pytest.approx(D * DEAD_KL, abs=1e-6)
    assert len(image["kl_per_unit"]) == D
    assert evaluation["latent_warnings"][0].startswith("the latent is inactive: q(z | image) has 0 of 4")
    stderr = " ".join(result.stderr.split())
    assert stderr.count("warning inactive latent (posterior collapse: it ignores its input): q(z | image) "
                        "(0 of 4 units, KL 0.39)") == 1  # one entry, on stderr, not an error
    assert stderr.count("remedy against collapse and chance:") == 1
    assert "inactive" not in result.stdout


def test_mvae_train_warns_at_the_end_from_the_last_epoch(data_path, tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "build_model", _dead_image_build)
    result = runner.invoke(app, ["train", "--data", str(data_path), "--out", str(tmp_path / "run"), "epochs=1",
                                 "batch_size=32", "model.hidden=16", f"model.latent_dim={D}"])
    assert result.exit_code == 0, result.output
    stderr = " ".join(result.stderr.split())
    assert "warning inactive latent (posterior collapse: it ignores its input): q(z | image) (0 of 4 units" in stderr
    assert "free_bits=0.25" in stderr


def test_a_healthy_tiny_run_does_not_warn(data_path, tmp_path):
    # free bits (a remedy) with a brisk learning rate: every unit of both posteriors is used
    loop.train(_recipe(data_path, "epochs=2", "lr=0.01", "free_bits=1"), tmp_path / "run", hooks=[LatentDiagnosticsHook()])
    line = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert line["latent.image.active_units"] == D and line["latent.label.active_units"] == D
    assert line["latent.image.mutual_information"] > 0.05
    assert last_epoch_findings(tmp_path / "run") == []


def test_the_sweep_summary_warns_of_an_inactive_latent_per_grid_point():
    from mvae_cli.cli.study_tables import print_warnings

    rows = [{"point": f"beta={b},seed={s}", "beta": b, "seed": s, "latent.image.active_units": active[s],
             "latent.image.latent_dim": 16, "latent.image.kl": kl, "latent.image.mutual_information": 0.0}
            for b, active, kl in ((1.0, (0, 0, 0), 0.001), (0.5, (9, 10, 11), 6.0)) for s in (0, 1, 2)]
    out = io.StringIO()
    print_warnings(rows, ["beta", "seed"], Console(file=out, width=100))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 100
    # the note, the finding, the remedies once (wrapped at words under an indent)
    assert [line.split(" ", 1)[0] for line in lines if not line.startswith(" ")] == ["note", "warning", "remedy"]
    assert lines[1] == "warning inactive latent (posterior collapse: it ignores its input): q(z | image) [1.0]"
    assert lines[2].startswith("remedy  against collapse and chance:") and lines[3].startswith(" " * 8)
    assert "free_bits=0.25" in " ".join(lines[2:])


def test_a_mean_over_no_run_is_left_out_of_the_warnings():
    # a sweep over models where the VAE has no q(z | label): the mean over its seeds is NaN
    nan = float("nan")
    flat = {"latent.label.active_units": nan, "latent.label.latent_dim": nan, "latent.label.kl": nan,
            "latent.image.active_units": 0.0, "latent.image.latent_dim": 64.0, "latent.image.kl": 0.001}
    lines = warnings_from_flat(flat)
    assert len(lines) == 1 and "q(z | image)" in lines[0]
