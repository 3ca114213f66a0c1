"""The drill: bad inputs and faults across every command, through the real CLI (issue 9).

Each case runs in a fresh copy of a small workspace (a tiny dataset, a trained run, a finished
sweep, recipes), after an optional setup that damages something. Every case must end with exit
code 2 (130 for Ctrl-C) and one line on stderr naming the problem, no traceback, every file that
existed before unchanged (checksums), and no temporary file left behind. Most cases run in
process; file-size limits and signals run ``python -m mvae_cli`` as a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from mvae_cli.cli.app import app
from tests.helpers import make_dataset

ROOT = Path(__file__).resolve().parents[2]
DATA = "data/tiny.h5"
RUN = "runs/r2"  # trained for 2 epochs
SWEEP = "sweeps/s"  # a finished sweep of sweep.yaml
TINY = ["model.hidden=16", "model.latent_dim=4", "batch_size=50"]
RECIPE = {"data": {"path": DATA}, "model": {"hidden": 16, "latent_dim": 4}, "epochs": 1, "batch_size": 50}
SWEEP_RECIPE = {**RECIPE, "eval": {"particles": 4, "prior_samples": 8, "limit": 10}, "grid": {"seed": [0]}}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """The workspace every case copies: built once, through the real CLI."""
    ws = tmp_path_factory.mktemp("pristine")
    cwd = os.getcwd()
    os.chdir(ws)
    try:
        make_dataset(Path(DATA), sizes=(200, 60, 60))
        Path("recipe.yaml").write_text(yaml.safe_dump(RECIPE))
        Path("sweep.yaml").write_text(yaml.safe_dump(SWEEP_RECIPE))
        runner = CliRunner()
        result = runner.invoke(app, ["train", "--data", DATA, "--out", RUN, "epochs=2", *TINY])
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["sweep", "sweep.yaml", "--out", SWEEP])
        assert result.exit_code == 0, result.output
    finally:
        os.chdir(cwd)
    return ws


# --- setups: each damages the workspace (the current directory) before the command runs ----------


def _attrs(path: str = DATA, **attrs) -> Callable[[], None]:
    def setup() -> None:
        with h5py.File(path, "r+") as handle:
            for key, value in attrs.items():
                if value is None:
                    del handle.attrs[key]
                else:
                    handle.attrs[key] = value
    return setup


def _delete(*names: str, path: str = DATA) -> Callable[[], None]:
    def setup() -> None:
        with h5py.File(path, "r+") as handle:
            for name in names:
                del handle[name]
    return setup


def _h5(edit: Callable[[h5py.File], None], path: str = DATA) -> Callable[[], None]:
    def setup() -> None:
        with h5py.File(path, "r+") as handle:
            edit(handle)
    return setup


def _write(path: str, content: str | bytes) -> Callable[[], None]:
    def setup() -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            Path(path).write_bytes(content)
        else:
            Path(path).write_text(content)
    return setup


def _recipe(path: str, **changes) -> Callable[[], None]:
    raw = yaml.safe_load(yaml.safe_dump(SWEEP_RECIPE if "grid" in changes or path.startswith("sweep") else RECIPE))
    for key, value in changes.items():
        node = raw
        *parents, last = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return _write(path, yaml.safe_dump(raw))


def _mkdir(path: str) -> Callable[[], None]:
    return lambda: Path(path).mkdir(parents=True, exist_ok=True)


def _remove(path: str) -> Callable[[], None]:
    def setup() -> None:
        p = Path(path)
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return setup


def _truncate(path: str, keep: float = 0.5) -> Callable[[], None]:
    def setup() -> None:
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: int(len(data) * keep)])
    return setup


def _replace_dataset(seed: int = 1, sizes=(200, 60, 60)) -> Callable[[], None]:
    """Another dataset at the same path: what resume and eval must notice."""
    def setup() -> None:
        Path(DATA).unlink()
        make_dataset(Path(DATA), sizes=sizes, seed=seed)
    return setup


def _interrupted_point() -> None:
    """The sweep's point as if killed after its first epoch: run.json still says training."""
    run = Path(SWEEP) / "runs" / "seed=0"
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "training", "epochs_done": 0}))
    (run / "eval.json").unlink()


def _sweep_trained_for(epochs: int) -> Callable[[], None]:
    """The finished sweep as if its recipe had asked for more epochs than the one given now."""
    def setup() -> None:
        path = Path(SWEEP) / "sweep.json"
        stored = json.loads(path.read_text())
        stored["recipe"]["epochs"] = epochs
        path.write_text(json.dumps(stored))
    return setup


def _both(*setups: Callable[[], None]) -> Callable[[], None]:
    def setup() -> None:
        for s in setups:
            s()
    return setup


# --- the table --------------------------------------------------------------------------------------


@dataclass
class Case:
    """One bad input or fault: the command line, what to break first, what the error must say."""

    id: str
    args: list[str]
    says: tuple[str, ...]  # fragments of the one error line
    setup: Callable[[], None] | None = None
    fsize: int | None = None  # RLIMIT_FSIZE in bytes: run as a subprocess under a file-size limit
    new_files_ok: bool = False  # the run legitimately started (e.g. a loss that diverges in epoch 1)
    skip: Callable[[], str | None] = field(default=lambda: None)
    slow: bool = False  # a subprocess that trains: more than a few seconds


def _needs_cpu_only() -> str | None:
    return "this machine has CUDA" if torch.cuda.is_available() else None


def _needs_unprivileged() -> str | None:
    return "running as root: chmod does not stop root from writing" if os.geteuid() == 0 else None


def _readonly(path: str) -> Callable[[], None]:
    return lambda: os.chmod(path, 0o555)


CASES = [
    # prepare: values ------------------------------------------------------------------------
    Case("prepare-unknown-dataset", ["prepare", "nosuch", "--out", "x.h5"], ("unknown dataset", "shapes")),
    Case("prepare-supervision-nan", ["prepare", "--supervision", "nan", "--out", "x.h5"], ("--supervision", "nan")),
    Case("prepare-supervision-inf", ["prepare", "--supervision", "inf", "--out", "x.h5"], ("--supervision", "inf")),
    Case("prepare-keep-prob-nan", ["prepare", "--keep-prob", "0.5,nan", "--out", "x.h5"], ("--keep-prob", "nan")),
    Case("prepare-supervision-above-1", ["prepare", "--supervision", "1.5", "--out", "x.h5"], ("--supervision", "[0, 1]")),
    Case("prepare-supervision-not-a-number", ["prepare", "--supervision", "0.1,abc", "--out", "x.h5"], ("'abc'", "not a number")),
    Case("prepare-n-train-zero", ["prepare", "--n-train", "0", "--out", "x.h5"], ("--n-train", "at least 1")),
    Case("prepare-n-train-huge", ["prepare", "--n-train", str(10**12), "--out", "x.h5"], ("--n-train", "PiB", "memory available")),
    Case("prepare-n-test-huge", ["prepare", "--n-test", str(10**11), "--out", "x.h5"], ("--n-test", "memory")),
    Case("prepare-seed-negative", ["prepare", "--seed", "-1", "--out", "x.h5"], ("--seed", "at least 0")),
    Case("prepare-base-for-shapes", ["prepare", "shapes", "--base", "celeba", "--out", "x.h5"], ("--base", "transforms")),
    Case("prepare-source-for-shapes", ["prepare", "shapes", "--source", "data", "--out", "x.h5"], ("takes no --source",)),
    Case("prepare-custom-without-spec", ["prepare", "custom", "--source", "a.npz", "--out", "x.h5"], ("--spec",)),
    Case("prepare-mnist-source-missing", ["prepare", "mnist", "--source", "nowhere", "--out", "x.h5"], ("nowhere",)),
    Case("prepare-mnist-source-is-a-file", ["prepare", "mnist", "--source", DATA, "--out", "x.h5"], (DATA, "folder")),
    # prepare: the output path -----------------------------------------------------------------
    Case("prepare-out-exists", ["prepare", "--out", DATA, "--n-train", "10"], ("already exists", "--force")),
    Case("prepare-out-is-a-folder", ["prepare", "--out", "data", "--n-train", "10"], ("is a folder",)),
    Case("prepare-out-through-a-file", ["prepare", "--out", f"{DATA}/x.h5", "--n-train", "10"], (DATA, "not a folder")),
    Case("prepare-out-read-only-folder", ["prepare", "--out", "ro/x.h5", "--n-train", "10"], ("ro", "ermission"),
         setup=_both(_mkdir("ro"), _readonly("ro")), skip=_needs_unprivileged),
    Case("prepare-file-size-limit", ["prepare", "--out", "big.h5", "--n-train", "3000"], ("big.h5", "File too large"),
         fsize=2 << 20),
    # info: damaged files --------------------------------------------------------------------
    Case("info-missing-file", ["info", "nope.h5"], ("nope.h5", "does not exist")),
    Case("info-a-folder", ["info", "data"], ("data", "is a folder")),
    Case("info-not-hdf5", ["info", "recipe.yaml"], ("not an HDF5 file",)),
    Case("info-truncated", ["info", DATA], ("not an HDF5 file",), setup=_truncate(DATA)),
    Case("info-not-mvae", ["info", DATA], ("not an mvae dataset",), setup=_attrs(format="other")),
    Case("info-format-version-text", ["info", DATA], ("format_version", "'abc'", "whole number"), setup=_attrs(format_version="abc")),
    Case("info-format-version-fraction", ["info", DATA], ("format_version", "1.5"), setup=_attrs(format_version=1.5)),
    Case("info-format-version-missing", ["info", DATA], ("format_version",), setup=_attrs(format_version=None)),
    Case("info-format-version-future", ["info", DATA], ("format_version 2",), setup=_attrs(format_version=2)),
    Case("info-modality-order-not-json", ["info", DATA], ("modality_order", "JSON"), setup=_attrs(modality_order="[image, label")),
    Case("info-modality-order-not-a-list", ["info", DATA], ("modality_order", "list"), setup=_attrs(modality_order="5")),
    Case("info-modality-order-empty", ["info", DATA], ("modality_order", "no modality"), setup=_attrs(modality_order="[]")),
    Case("info-modality-group-deleted", ["info", DATA], ("/modalities/label", "missing"), setup=_delete("modalities/label")),
    Case("info-modality-kind-unknown", ["info", DATA], ("label", "kind", "video"),
         setup=_h5(lambda h: h["modalities/label"].attrs.__setitem__("kind", "video"))),
    Case("info-modality-shape-missing", ["info", DATA], ("label", "shape"),
         setup=_h5(lambda h: h["modalities/label"].attrs.__delitem__("shape"))),
    Case("info-split-array-deleted", ["info", DATA], ("/valid/label", "missing"), setup=_delete("valid/label")),
    Case("info-split-lengths-differ", ["info", DATA], ("/train/label", "rows"),
         setup=_h5(lambda h: (h["train"].__delitem__("label"), h["train"].create_dataset("label", data=np.zeros(7, np.uint8))))),
    Case("info-mask-wrong-columns", ["info", DATA], ("mask", "columns"),
         setup=_h5(lambda h: h.create_dataset("train/masks/bad", data=np.ones((200, 5), bool)))),
    # train: numbers that must be finite -------------------------------------------------------
    Case("train-supervision-nan", ["train", "--data", DATA, "--supervision", "nan", *TINY], ("supervision", "nan")),
    Case("train-keep-prob-nan", ["train", "--data", DATA, "--keep-prob", "nan", *TINY], ("keep_prob", "nan")),
    Case("train-keep-prob-inf", ["train", "--data", DATA, "--keep-prob", "inf", *TINY], ("keep_prob", "inf")),
    Case("train-override-lr-nan", ["train", "--data", DATA, "lr=.nan", *TINY], ("'lr'", "finite")),
    Case("train-override-lr-inf", ["train", "--data", DATA, "lr=.inf", *TINY], ("'lr'", "finite")),
    Case("train-override-anneal-nan", ["train", "--data", DATA, "anneal_epochs=.nan", *TINY], ("anneal_epochs", "finite")),
    Case("train-override-weight-inf", ["train", "--data", DATA, "model.weights.image=.inf", *TINY], ("model.weights.image", "finite")),
    Case("train-recipe-lr-nan", ["train", "--recipe", "bad.yaml"], ("'lr'", "finite"), setup=_recipe("bad.yaml", lr=float("nan"))),
    Case("train-recipe-anneal-inf", ["train", "--recipe", "bad.yaml"], ("anneal_epochs", "finite"),
         setup=_recipe("bad.yaml", anneal_epochs=float("inf"))),
    # train: recipes, files and folders ---------------------------------------------------------
    Case("train-recipe-not-utf8", ["train", "--recipe", "bad.yaml"], ("bad.yaml", "UTF-8"),
         setup=_write("bad.yaml", "epochs: 1\n# caf\xe9\n".encode("latin-1"))),
    Case("train-recipe-is-a-folder", ["train", "--recipe", "data"], ("data", "is a folder")),
    Case("train-recipe-missing", ["train", "--recipe", "nope.yaml"], ("nope.yaml", "does not exist")),
    Case("train-recipe-bad-yaml", ["train", "--recipe", "bad.yaml"], ("not valid YAML",), setup=_write("bad.yaml", "epochs: [1\n")),
    Case("train-recipe-not-a-mapping", ["train", "--recipe", "bad.yaml"], ("mapping",), setup=_write("bad.yaml", "- 1\n- 2\n")),
    Case("train-unknown-weight-modality", ["train", "--data", DATA, "--out", "runs/new", "model.weights.nosuch=2", *TINY],
         ("model.weights", "nosuch", "image, label")),
    Case("train-data-missing", ["train", "--data", "nope.h5", *TINY], ("nope.h5", "does not exist")),
    Case("train-data-is-a-folder", ["train", "--data", "data", *TINY], ("data", "is a folder")),
    Case("train-data-damaged", ["train", "--data", DATA, "--out", "runs/new", *TINY], ("modality_order",),
         setup=_attrs(modality_order="{")),
    Case("train-device-cuda-without-gpu", ["train", "--data", DATA, "--device", "cuda", *TINY], ("no CUDA device",),
         skip=_needs_cpu_only),
    Case("train-bf16-on-cpu", ["train", "--data", DATA, "--device", "cpu", "--precision", "fp16", *TINY], ("fp16",)),
    Case("train-out-is-a-file", ["train", "--data", DATA, "--out", "recipe.yaml", *TINY], ("recipe.yaml", "is a file")),
    Case("train-out-through-a-file", ["train", "--data", DATA, "--out", "recipe.yaml/run", *TINY], ("recipe.yaml", "not a folder")),
    Case("train-out-holds-another-run", ["train", "--data", DATA, "--out", RUN, "--seed", "3", *TINY], ("different run",)),
    Case("train-out-read-only", ["train", "--data", DATA, "--out", "ro/run", *TINY], ("ro", "ermission"),
         setup=_both(_mkdir("ro"), _readonly("ro")), skip=_needs_unprivileged),
    Case("train-file-size-limit", ["train", "--data", DATA, "--out", "runs/new", "epochs=1", "model.hidden=256", "batch_size=50"],
         ("runs/new", "File too large"), fsize=256 << 10, new_files_ok=True, slow=True),
    Case("train-diverges-in-epoch-1", ["train", "--data", DATA, "--out", "runs/new", "lr=1.0e+30", *TINY],
         ("epoch 1", "no checkpoint"), new_files_ok=True),
    # train: resuming ------------------------------------------------------------------------------
    Case("resume-not-a-run", ["train", "--resume", "data"], ("not a run directory",)),
    Case("resume-with-other-options", ["train", "--resume", RUN, "--seed", "4"], ("--resume", "--seed")),
    Case("resume-fewer-epochs", ["train", "--resume", RUN, "--epochs", "1"], ("2 epochs", "--epochs 1")),
    Case("resume-dataset-changed", ["train", "--resume", RUN, "--epochs", "3"], (DATA, "changed"), setup=_replace_dataset()),
    Case("resume-dataset-deleted", ["train", "--resume", RUN, "--epochs", "3"], (DATA, "does not exist"), setup=_remove(DATA)),
    Case("resume-config-damaged", ["train", "--resume", RUN, "--epochs", "3"], ("config.yaml", "YAML"),
         setup=_write(f"{RUN}/config.yaml", "epochs: [3\n")),
    Case("resume-config-not-utf8", ["train", "--resume", RUN, "--epochs", "3"], ("config.yaml", "UTF-8"),
         setup=_write(f"{RUN}/config.yaml", b"epochs: 3 # \xff\n")),
    Case("resume-run-json-damaged", ["train", "--resume", RUN, "--epochs", "3"], ("run.json", "JSON"),
         setup=_write(f"{RUN}/run.json", "{")),
    Case("resume-last-checkpoint-truncated", ["train", "--resume", RUN, "--epochs", "3"], ("last.pt", "damaged"),
         setup=_truncate(f"{RUN}/last.pt")),
    Case("resume-mask-damaged", ["train", "--resume", RUN, "--epochs", "3"], ("mask.npy",), setup=_write(f"{RUN}/mask.npy", "x")),
    # eval ---------------------------------------------------------------------------------------------
    Case("eval-not-a-run", ["eval", "data"], ("not a run directory",)),
    Case("eval-no-runs", ["eval"], ("no run found",), setup=_both(_remove("runs"), _remove("sweeps"))),
    Case("eval-missing-checkpoint", ["eval", RUN, "--checkpoint", "last"], ("last.pt",), setup=_remove(f"{RUN}/last.pt")),
    Case("eval-unknown-x", ["eval", RUN, "--x", "nosuch"], ("--x", "nosuch", "image, label")),
    Case("eval-x-in-y", ["eval", RUN, "--x", "image", "--y", "image,label"], ("--y", "must not contain")),
    Case("eval-empty-y-item", ["eval", RUN, "--y", "label,"], ("--y",)),
    # mvae eval's options are the recipe's eval section: the recipe key's check, naming the option
    Case("eval-particles-zero", ["eval", RUN, "--particles", "0"], ("--particles", "[1, ∞)", "got 0")),
    Case("eval-prior-samples-zero", ["eval", RUN, "--prior-samples", "0"], ("--prior-samples", "[1, ∞)")),
    Case("eval-limit-zero", ["eval", RUN, "--limit", "0"], ("--limit", "[1, ∞)")),
    Case("eval-batch-size-zero", ["eval", RUN, "--batch-size", "0"], ("--batch-size", "at least 1")),
    Case("eval-split-train", ["eval", RUN, "--split", "train"], ("test", "valid")),
    Case("eval-checkpoint-middle", ["eval", RUN, "--checkpoint", "middle"], ("best", "last")),
    Case("eval-max-memory-text", ["eval", RUN, "--max-memory", "lots"], ("--max-memory", "'lots'")),
    Case("eval-max-memory-zero", ["eval", RUN, "--max-memory", "0"], ("--max-memory", "positive")),
    Case("eval-max-memory-negative", ["eval", RUN, "--particles", "2", "--max-memory", "-5GB"], ("--max-memory",)),
    Case("eval-device-cuda-without-gpu", ["eval", RUN, "--device", "cuda"], ("no CUDA device",), skip=_needs_cpu_only),
    Case("eval-dataset-changed", ["eval", RUN, "--particles", "2"], (DATA, "changed"), setup=_replace_dataset(seed=5)),
    Case("eval-dataset-deleted", ["eval", RUN, "--particles", "2"], (DATA, "gone"), setup=_remove(DATA)),
    Case("eval-run-json-damaged", ["eval", RUN], ("run.json", "JSON"), setup=_write(f"{RUN}/run.json", "[1, 2")),
    Case("eval-best-checkpoint-truncated", ["eval", RUN, "--particles", "2"], ("best.pt", "damaged"),
         setup=_truncate(f"{RUN}/best.pt")),
    Case("eval-json-is-a-folder", ["eval", RUN, "--particles", "2", "--limit", "5"], ("eval.json", "is a folder"),
         setup=_mkdir(f"{RUN}/eval.json")),
    # sweep -------------------------------------------------------------------------------------------
    Case("sweep-recipe-missing", ["sweep", "nope.yaml"], ("nope.yaml", "does not exist")),
    Case("sweep-recipe-is-a-folder", ["sweep", "data"], ("data", "is a folder")),
    Case("sweep-recipe-not-utf8", ["sweep", "bad.yaml"], ("bad.yaml", "UTF-8"), setup=_write("bad.yaml", b"grid: {seed: [0]} # \xe9\n")),
    Case("sweep-no-grid", ["sweep", "recipe.yaml"], ("no grid",)),
    Case("sweep-grid-nan", ["sweep", "bad.yaml", "--out", "sweeps/new"], ("grid value", "lr", "finite"),
         setup=_recipe("bad.yaml", grid={"lr": [0.001, float("nan")]})),
    Case("sweep-grid-inf-supervision", ["sweep", "bad.yaml", "--out", "sweeps/new"], ("grid value", "supervision"),
         setup=_recipe("bad.yaml", grid={"supervision": [float("inf")]})),
    Case("sweep-grid-empty", ["sweep", "bad.yaml"], ("no values",), setup=_recipe("bad.yaml", grid={"seed": []})),
    Case("sweep-grid-repeated", ["sweep", "bad.yaml"], ("more than once",), setup=_recipe("bad.yaml", grid={"seed": [1, 1]})),
    Case("sweep-grid-unknown-key", ["sweep", "bad.yaml"], ("unknown recipe key", "nosuch"), setup=_recipe("bad.yaml", grid={"nosuch": [1]})),
    Case("sweep-override-nan", ["sweep", "sweep.yaml", "--out", "sweeps/new", "anneal_epochs=.nan"], ("anneal_epochs", "finite")),
    Case("sweep-override-grid-key", ["sweep", "sweep.yaml", "seed=3"], ("grid varies", "grid.seed")),
    Case("sweep-jobs-zero", ["sweep", "sweep.yaml", "--out", "sweeps/new", "--jobs", "0"], ("--jobs", "at least 1")),
    Case("sweep-cuda-without-gpu", ["sweep", "sweep.yaml", "--out", "sweeps/new", "device=cuda"], ("no CUDA device",),
         skip=_needs_cpu_only),
    Case("sweep-unknown-weight-modality", ["sweep", "sweep.yaml", "--out", "sweeps/new", "model.weights.nosuch=2"],
         ("model.weights", "nosuch")),
    Case("sweep-unknown-eval-x", ["sweep", "sweep.yaml", "--out", "sweeps/new", "eval.x=nosuch"], ("eval.x", "nosuch")),
    Case("sweep-changed-override-on-finished", ["sweep", "sweep.yaml", "--out", SWEEP, "model.hidden=8"],
         ("model.hidden", "16", "8", "--out")),
    Case("sweep-fewer-epochs-on-finished", ["sweep", "sweep.yaml", "--out", SWEEP], ("epochs: 3 -> 1", "--out"),
         setup=_sweep_trained_for(3)),
    Case("sweep-out-is-a-file", ["sweep", "sweep.yaml", "--out", "recipe.yaml"], ("recipe.yaml", "is a file")),
    Case("sweep-out-through-a-file", ["sweep", "sweep.yaml", "--out", "recipe.yaml/s"], ("recipe.yaml", "not a folder")),
    Case("sweep-dataset-cannot-be-built", ["sweep", "sweep.yaml", "--out", "sweeps/new", "data.path=data/m.h5",
                                           "data.dataset=mnist", "data.source=nowhere"], ("cannot prepare", "nowhere")),
    # plot --------------------------------------------------------------------------------------------
    Case("plot-missing", ["plot", "nowhere"], ("nowhere", "not a directory")),
    Case("plot-a-file", ["plot", DATA], (DATA, "not a directory")),
    Case("plot-neither", ["plot", "data"], ("holds no results",)),
    Case("plot-format-svg", ["plot", SWEEP, "--format", "svg"], ("--format", "png or pdf")),
    Case("plot-results-damaged", ["plot", SWEEP], ("results.json", "not a results file"), setup=_write(f"{SWEEP}/results.json", "{")),
    Case("plot-metrics-damaged", ["plot", RUN], ("metrics.jsonl", "not JSON"), setup=_write(f"{RUN}/metrics.jsonl", "{oops\n")),
    Case("plot-out-is-a-file", ["plot", RUN, "--out", "recipe.yaml"], ("recipe.yaml", "is a file")),
    Case("plot-no-finished-point", ["plot", SWEEP], ("no results yet",),
         setup=_write(f"{SWEEP}/results.json", json.dumps({"grid": ["seed"], "columns": [], "rows": []}))),
]


def _checksums(root: Path) -> dict[str, str]:
    sums = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            sums[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return sums


def _file_size_limit(limit: int) -> Callable[[], None]:
    """A ``preexec_fn``: cap the size of any file the child writes (``ulimit -f``), and ignore
    SIGXFSZ so that a write past the cap fails with EFBIG instead of killing the process."""
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return apply


def _run(case: Case) -> tuple[int, str]:
    """Exit code and stderr of ``mvae ARGS`` in the current directory."""
    if case.fsize is None:
        result = CliRunner().invoke(app, case.args)
        return result.exit_code, result.stderr
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "mvae_cli", *case.args], env=env, capture_output=True, text=True,
                          preexec_fn=_file_size_limit(case.fsize), timeout=300)
    return done.returncode, done.stderr


@pytest.fixture
def workspace(pristine, tmp_path, monkeypatch) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(pristine, ws)
    for info in ws.rglob("run.json"):  # the copy's runs name the copy's dataset, not the pristine one
        info.write_text(info.read_text().replace(str(pristine), str(ws)))
    monkeypatch.chdir(ws)
    yield ws
    for path in ws.rglob("*"):  # undo chmod so that pytest can clean up
        if path.is_dir():
            os.chmod(path, 0o755)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in CASES])
def test_drill(case: Case, workspace: Path):
    reason = case.skip()
    if reason:
        pytest.skip(reason)
    if case.setup is not None:
        case.setup()
    before = _checksums(workspace)
    code, stderr = _run(case)
    after = _checksums(workspace)

    assert "Traceback" not in stderr, stderr
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    if case.new_files_ok:  # the run printed its progress before it stopped
        lines = lines[-1:]
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    for fragment in case.says:
        assert fragment in lines[0], lines[0]
    assert {k: after.get(k) for k in before} == before, "a file that existed before was changed"
    new = sorted(set(after) - set(before))
    assert not [n for n in new if n.endswith(".tmp") or "/." in f"/{n}"], f"temporary files left: {new}"
    if not case.new_files_ok:
        assert not new, f"files written: {new}"


def test_the_drill_covers_every_command():
    commands = {case.args[0] for case in CASES}
    assert commands == {"prepare", "info", "train", "eval", "sweep", "plot"}
    assert len(CASES) >= 60


# --- Ctrl-C and kill: exit 130, one line saying where things stand, nothing half-written ----------


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "mvae_cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _when(condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _stopped(process: subprocess.Popen, signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def _interrupted_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Interrupted: "), stderr
    return last


@pytest.mark.slow
def test_ctrl_c_in_train_says_how_to_resume(workspace):
    process = _start(["train", "--data", DATA, "--out", "runs/int", "epochs=1000", *TINY])
    _when(lambda: Path("runs/int/last.pt").is_file(), process)
    code, stderr = _stopped(process, signal.SIGINT)
    line = _interrupted_line(stderr)
    assert code == 130
    assert "of 1000 epochs" in line and "mvae train --resume runs/int" in line, line
    assert not [p for p in workspace.rglob("*") if p.name.endswith(".tmp")]


def test_kill_during_prepare_leaves_no_temporary_file(workspace):
    before = sorted(p.name for p in Path("data").iterdir())
    # large enough that the write lasts (20,000 rows: 0.17 s between the temporary file and the end)
    process = _start(["prepare", "--out", "data/big.h5", "--n-train", "100000"])
    _when(lambda: any(p.name.endswith(".tmp") for p in Path("data").iterdir()), process)
    code, stderr = _stopped(process, signal.SIGTERM)
    assert code == 130 and _interrupted_line(stderr)
    assert sorted(p.name for p in Path("data").iterdir()) == before


@pytest.mark.slow
def test_ctrl_c_in_sweep_says_how_to_resume(workspace):
    process = _start(["sweep", "sweep.yaml", "--out", "sweeps/int", "epochs=1000"])
    _when(lambda: Path("sweeps/int/runs/seed=0/last.pt").is_file(), process)
    code, stderr = _stopped(process, signal.SIGINT)
    line = _interrupted_line(stderr)
    assert code == 130 and "0 of 1 points" in line and "run the same command again" in line, line


@pytest.mark.slow
def test_killing_a_sweep_stops_its_workers(workspace):
    process = _start(["sweep", "sweep.yaml", "--out", "sweeps/int", "--jobs", "2", "epochs=1000", "grid.seed=[0,1]"])
    _when(lambda: all(Path(f"sweeps/int/runs/seed={s}/last.pt").is_file() for s in (0, 1)), process)
    workers = _children(process.pid)
    assert workers
    code, stderr = _stopped(process, signal.SIGTERM)
    assert code == 130 and _interrupted_line(stderr)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)], "workers still running after the sweep was killed"


def test_dry_run_reports_the_epoch_last_pt_holds(workspace):
    _interrupted_point()
    result = CliRunner().invoke(app, ["sweep", "sweep.yaml", "--out", SWEEP, "--dry-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "resumes after epoch 1" in result.output, result.output
