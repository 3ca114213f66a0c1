"""What a person reads fits 80 columns, whole: ``mvae train``, ``mvae eval`` and the sweep summary,
with output to a file (always; what CI checks) and in a real 80-column terminal (tmux, where installed).

"Whole" means no cell cut with an ellipsis and every number the tables promise printed as one
token: each log-likelihood rounded to its standard error, chance without ±.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from rich.console import Console

from mvae_cli.cli.study_tables import print_summary, print_warnings
from mvae_cli.tables.rounding import binomial_se, estimate, exact
from tests.helpers import make_dataset

WIDTH = 80


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TERM_PROGRAM")}
    env["PYTHONWARNINGS"] = "ignore"  # a library's deprecation notice is not ours to measure
    return env


def _mvae(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mvae_cli", *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=600)


def _check_lines(text: str) -> None:
    for line in text.splitlines():
        assert len(line) <= WIDTH, f"{len(line)} columns: {line!r}"
        assert "…" not in line, f"cut: {line!r}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run trained and evaluated through the real CLI, its output written to files."""
    root = tmp_path_factory.mktemp("eighty")
    data = make_dataset(root / "tiny.h5", sizes=(300, 60, 60))
    train = _mvae("train", "--data", str(data), "--out", str(root / "run"), "epochs=2", "model.hidden=32",
                  "model.latent_dim=4", "batch_size=50", cwd=root)
    assert train.returncode == 0, train.stderr
    evaluate = _mvae("eval", str(root / "run"), "--particles", "20", "--prior-samples", "100", cwd=root)
    assert evaluate.returncode == 0, evaluate.stderr
    return root, train, evaluate


def test_train_output_to_a_file_fits_and_states_the_checkpoints(trained):
    _, train, _ = trained
    _check_lines(train.stdout + train.stderr)
    assert "epoch 2/2  loss" in train.stderr
    summary = " ".join(train.stderr.split())
    assert re.search(r"checkpoints: best\.pt [\d.]+ [kM]B, last\.pt [\d.]+ [kM]B", summary), summary


def test_eval_output_to_a_file_fits_with_every_number_whole(trained):
    root, _, evaluate = trained
    _check_lines(evaluate.stdout + evaluate.stderr)
    result = json.loads((root / "run" / "eval.json").read_text())
    for key in ("log_px", "log_pxy", "log_px_given_y"):
        for figure in result[key].values():
            assert estimate(figure["mean"], figure["se"]) in evaluate.stdout
    accuracy_part = evaluate.stdout.split("did the unpaired data give")[0]
    (chance_row,) = [line for line in accuracy_part.splitlines() if line.startswith("label ")]
    assert chance_row.rstrip().endswith(exact(result["chance"]["label"]))  # chance: no ±
    assert chance_row.count("±") == 2  # the model and the paired-only classifier, each with its error
    # each part after the likelihoods said as it started, in the log
    for part in ("likelihoods of 60 examples", "paired-only classifier", "coherence and latent probe",
                 "fair baselines", "image-only VAE: epoch", "done"):
        assert part in evaluate.stderr
    (fair_row,) = [line for line in evaluate.stdout.split("did the unpaired data give")[1].splitlines()
                   if line.startswith("label ")]
    assert fair_row.count("±") == 3  # the model, the probe of its code, the probe of the image-only VAE
    assert estimate(result["vae_probe"]["label"], binomial_se(result["vae_probe"]["label"], 60)) in fair_row


def _rows():
    rows = []
    for image_net in ("mlp", "conv"):
        for f in (0.01, 0.1, 1.0):
            for seed in (0, 1, 2):
                acc = 0.35 + 0.4 * f + 0.013 * seed
                rows.append({"point": f"model.image_net={image_net},supervision={f},seed={seed}",
                             "model.image_net": image_net, "supervision": f, "seed": seed, "n_examples": 1000,
                             "accuracy.shape": acc, "accuracy.mean": acc, "baseline.shape": 0.9 + 0.01 * seed,
                             "baseline.mean": 0.9 + 0.01 * seed, "chance.shape": 0.3675, "chance.mean": 0.3675,
                             "log_px.image.mean": -1016.23 + seed, "log_px.image.se": 4.6, "log_px.image.ess": 18.0,
                             "log_px.image+shape.mean": -1016.0, "log_px.image+shape.se": 4.6,
                             "log_px.image+shape.ess": 17.0, "log_px.shape.mean": -1003.0, "log_px.shape.se": 4.5,
                             "log_px.shape.ess": 1.3, "log_pxy.image+shape.mean": -1019.5 - seed,
                             "log_pxy.image+shape.se": 4.6, "log_pxy.image+shape.ess": 18.0,
                             "log_px_given_y.image+shape.mean": -1016.1, "log_px_given_y.image+shape.se": 4.6,
                             "log_px_given_y.image+shape.ess": 18.0, "var_log_w.marginal.image": 8.4,
                             "var_log_w.joint.image+shape": 8.8, "var_log_w.conditional.image+shape": 8.8,
                             "latent.shape.active_units": 0, "latent.shape.latent_dim": 16, "latent.shape.kl": 0.01})
    return rows


def test_the_sweep_summary_and_its_warnings_fit_80_columns_in_a_file():
    out = io.StringIO()
    console = Console(file=out)  # not a terminal: 80 columns, as when output goes to a file
    assert console.width == WIDTH
    rows = _rows()
    print_summary(rows, ["model.image_net", "supervision", "seed"], console)
    print_warnings(rows, ["model.image_net", "supervision", "seed"], console)
    text = out.getvalue()
    _check_lines(text)
    assert "model.image_net" in text or "model.image_ne" in text  # a long key folds, never cut
    assert "0.3675 ±" not in text and " 0.367" in text  # chance: exact
    # log p(x) over seeds -1016.23 + (0, 1, 2): the mean ± its 95% CI (2.48), to its standard error (0.58)
    assert "-1015.2 ± 2.5" in text
    assert "shape [mlp/0.01, conv/0.01]" in " ".join(text.split())  # each grid point named whole
    assert sum(line.startswith("warning ") for line in text.splitlines()) == 3  # collapse, chance, below the baseline


def test_a_remedies_summary_fits_80_columns_and_names_the_best_variant_per_level():
    rows = []
    for variant, lift in (("paper", 0.0), ("share+cross", 0.3)):
        for f in (0.001, 0.01, 0.1):
            for seed in (0, 1, 2):
                acc = 0.3 + lift + 2 * f + 0.011 * seed
                rows.append({"point": f"{variant},{f},{seed}", "variant": variant, "supervision": f, "seed": seed,
                             "n_examples": 2000, "accuracy.label": acc, "accuracy.mean": acc,
                             "baseline.label": 0.55 + 0.01 * seed, "baseline.mean": 0.55 + 0.01 * seed,
                             "chance.label": 0.1135, "chance.mean": 0.1135, "paired_probe.label": 0.6 + lift / 3,
                             "paired_probe.mean": 0.6 + lift / 3 + 0.002 * seed, "vae_probe.label": 0.62,
                             "vae_probe.mean": 0.62 + 0.003 * seed})
    out = io.StringIO()
    print_summary(rows, ["variant", "supervision", "seed"], Console(file=out))
    text = out.getvalue()
    _check_lines(text)
    joined = " ".join(text.split())
    assert "the fair baselines: did the unpaired data give a better code?" in joined
    assert "probe of its code" in joined and "probe of image VAE" in joined
    # 0.001: share+cross 0.613 against the paired-only 0.560; 0.1: 0.811
    # each seed's difference to its classifier: 0.052 + 0.001·seed, so ± t(2)·0.001/√3 = 0.002
    assert ("best at 0.001 paired: variant share+cross, accuracy 0.613 ± 0.027: it beats the paired-only "
            "classifier's 0.560 ± 0.025 by 0.053 ± 0.002 (each seed against the classifier of its own "
            "pairs).") in joined
    assert joined.count("best at ") == 3


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_eval_in_a_real_80_column_terminal_reads_as_in_the_file(trained):
    root, _, evaluate = trained
    socket, done = f"mvae-{uuid.uuid4().hex[:8]}", f"done-{uuid.uuid4().hex[:8]}"
    command = (f"{sys.executable} -m mvae_cli eval {root / 'run'} --particles 20 --prior-samples 100; "
               f"tmux -L {socket} wait-for -S {done}; sleep 60")
    env = _env()
    subprocess.run(["tmux", "-L", socket, "new-session", "-d", "-s", "t", "-x", str(WIDTH), "-y", "200",
                    "-c", str(root), command], env=env, check=True)
    try:
        subprocess.run(["tmux", "-L", socket, "wait-for", done], timeout=300, check=True)
        time.sleep(0.5)
        pane = subprocess.run(["tmux", "-L", socket, "capture-pane", "-p", "-t", "t", "-S", "-200"],
                              capture_output=True, text=True, check=True).stdout
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
    assert "wrote" in pane, pane
    _check_lines(pane)
    shown = {line.rstrip() for line in pane.splitlines()}
    for line in evaluate.stdout.splitlines():
        if line.strip() and not line.startswith(("test split", "checkpoint")):  # the header holds the seconds
            assert line.rstrip() in shown, line


def test_a_dataset_with_nineteen_modalities_lists_its_masks_within_80_columns(tmp_path):
    import numpy as np

    from mvae_cli.cli.summary import dataset_summary
    from mvae_cli.data.format import ModalitySpec, read_dataset, write_dataset
    from mvae_cli.data.masks import supervision_mask

    specs = [ModalitySpec("image", "image", "bernoulli", (1, 8, 8))] + [
        ModalitySpec(f"attribute{i}", "categorical", "categorical", (), 2) for i in range(18)]
    rng = np.random.default_rng(0)

    def split(n):
        return {"image": rng.integers(0, 255, (n, 1, 8, 8)).astype(np.uint8),
                **{s.name: rng.integers(0, 2, n).astype(np.uint8) for s in specs[1:]}}

    masks = [(f"supervision={f}", supervision_mask(2000, 19, f, 0), "supervision", f, 0) for f in (0.01, 0.1)]
    path = tmp_path / "wide.h5"
    write_dataset(path, "wide", specs, {"train": split(2000), "valid": split(50), "test": split(50)}, seed=0,
                  masks=masks)
    out = io.StringIO()
    with read_dataset(path) as dataset:
        Console(file=out).print(dataset_summary(dataset))
    text = out.getvalue()
    _check_lines(text)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    assert rows["shown"] == ["f=0.01", "f=0.1"] and rows["paired"] == ["20", "200"]  # a column per mask
    only = [rows[name] for name in ("image", *(f"attribute{i}" for i in range(18)))]  # "<name> only", f=0.01, f=0.1
    assert all(r[0] == "only" for r in only) and sum(int(r[2]) for r in only) == 1800  # the 90% unpaired at f=0.1
