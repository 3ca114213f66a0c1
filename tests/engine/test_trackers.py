"""TensorBoard and MLflow beside metrics.jsonl (the real packages; skipped where not installed)."""

import importlib
import json

import pytest

from mvae_cli.engine import trackers as trackers_module
from mvae_cli.engine.loop import train
from mvae_cli.engine.trackers import TrackerHook
from mvae_cli.engine.trackers import sweep_group
from mvae_cli.errors import UserError
from mvae_cli.recipe import resolve_recipe
from tests.helpers import make_dataset


@pytest.fixture(scope="module")
def data_path(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny.h5")


def _recipe(data_path, *extra):
    return resolve_recipe(None, [f"data.path={data_path}", "epochs=2", "batch_size=50", "model.hidden=16",
                                 "model.latent_dim=4", "device=cpu", *extra])


def _metrics(run_dir):
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_unknown_tracker_is_a_recipe_error(data_path):
    with pytest.raises(UserError, match="'trackers' takes tensorboard, mlflow, got 'wandb'"):
        _recipe(data_path, "trackers=[wandb]")


@pytest.mark.parametrize("name, module", [("tensorboard", "torch.utils.tensorboard"), ("mlflow", "mlflow")])
def test_a_missing_package_is_one_line_saying_what_to_install(data_path, tmp_path, monkeypatch, name, module):
    real = importlib.import_module

    def fake(target, *args):
        if target == module:
            raise ImportError(f"No module named {target!r}")
        return real(target, *args)

    monkeypatch.setattr(trackers_module.importlib, "import_module", fake)
    with pytest.raises(UserError, match=rf"^--tracker {name} needs the {name} package: pip install 'mvae-cli\[{name}\]'$"):
        train(_recipe(data_path, f"trackers=[{name}]"), tmp_path / "run", hooks=[TrackerHook()])
    assert not (tmp_path / "run" / "last.pt").exists()


def test_tensorboard_gets_every_metrics_line(data_path, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(_recipe(data_path, "trackers=[tensorboard]"), tmp_path / "run", hooks=[TrackerHook()])
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    lines = _metrics(tmp_path / "run")
    for key in ("loss", "valid_elbo", "kl", "beta"):
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx([l[key] for l in lines], rel=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")  # mlflow's own dependencies
def test_mlflow_run_is_grouped_by_sweep(data_path, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    sweep = tmp_path / "study"
    (sweep / "runs").mkdir(parents=True)
    (sweep / "sweep.json").write_text("{}")
    run_dir = sweep / "runs" / "supervision=0.5,seed=0"
    train(_recipe(data_path, "trackers=[mlflow]", "supervision=0.5"), run_dir, hooks=[TrackerHook()])
    assert sweep_group(run_dir) == "study" and sweep_group(tmp_path / "elsewhere") is None
    client = mlflow.tracking.MlflowClient()
    experiment = client.get_experiment_by_name("study")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "supervision=0.5,seed=0" and run.info.status == "FINISHED"
    assert run.data.params["supervision"] == "0.5" and run.data.params["model.hidden"] == "16"
    history = client.get_metric_history(run.info.run_id, "valid_elbo")
    assert [(m.step, m.value) for m in history] == [(l["epoch"], pytest.approx(l["valid_elbo"])) for l in _metrics(run_dir)]
