import csv
import json

import pytest
from typer.testing import CliRunner

from mvae_cli.cli.app import app
from mvae_cli.figures.curves import plot_run
from mvae_cli.figures.study import choose_axes, plot_sweep
from mvae_cli.tables.results import write_tables

PNG = b"\x89PNG\r\n\x1a\n"


def _row(key, value, seed):
    x = value if isinstance(value, (int, float)) else len(str(value))
    acc = 0.4 + 0.05 * x + 0.01 * seed
    return {"point": f"{key}={value},seed={seed}", key: value, "seed": seed,
            "log_px.image.mean": -100.0 + x - seed, "log_px.image.se": 0.2, "log_px.image.ess": 40.0,
            "log_pxy.image.mean": -104.0 + x, "log_pxy.image+shape+colour.mean": -103.0 + x,
            "log_px_given_y.image+shape+colour.mean": -101.0 + x,
            "var_log_w.marginal.image": 3.0, "var_log_w.joint.image": 6.0 / (1 + x),
            "var_log_w.joint.image+shape+colour": 2.0, "var_log_w.conditional.image+shape+colour": 1.0,
            "accuracy.shape": acc, "accuracy.colour": acc + 0.1, "accuracy.mean": acc + 0.05,
            "train_seconds": 10.0, "eval_seconds": 2.0}


def _rows(key, values, seeds=(0, 1, 2)):
    return [_row(key, v, s) for v in values for s in seeds]


def _read_csv(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _assert_pngs(paths):
    figures = [p for p in paths if p.suffix == ".png"]
    assert figures
    for path in figures:
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000, path


@pytest.mark.parametrize("key, values, stem", [
    ("supervision", [0.0, 0.01, 0.1, 1.0], "accuracy_vs_supervision"),
    ("keep_prob", [0.1, 0.5, 1.0], "figures_vs_keep_prob"),
    ("k", [0, 1, 5], "figures_vs_k"),
    ("model.hidden", [16, 64], "all_figures_vs_model.hidden"),
    ("model.image_net", ["mlp", "conv"], "all_figures_vs_model.image_net"),
])
def test_each_grid_kind_gets_its_figure_and_numbers(tmp_path, key, values, stem):
    written = plot_sweep([key, "seed"], _rows(key, values), tmp_path)
    _assert_pngs(written)
    assert tmp_path / f"{stem}.png" in written and tmp_path / f"{stem}.csv" in written
    table = _read_csv(tmp_path / f"{stem}.csv")
    first = str(values[0])
    x = values[0] if isinstance(values[0], (int, float)) else len(values[0])
    if key in ("supervision", "keep_prob", "model.hidden", "model.image_net"):
        acc = next(r for r in table if r[key] == first and r["figure"] == "accuracy.mean")
        assert float(acc["mean"]) == pytest.approx(0.45 + 0.05 * x + 0.01)  # seeds 0, 1, 2 -> mean +0.01
        assert float(acc["std"]) == pytest.approx(0.01) and acc["count"] == "3"
        assert float(acc["ci95"]) == pytest.approx(4.302653 * 0.01 / 3 ** 0.5)
    if key == "k":
        var = [float(r["mean"]) for r in table if r["figure"] == "var_log_w.joint.image"]
        assert var == pytest.approx([6.0, 3.0, 1.0])
        assert {r["figure"] for r in table} == {"log_pxy.image.mean", "log_pxy.image+shape+colour.mean",
                                                 "var_log_w.joint.image", "var_log_w.joint.image+shape+colour"}


def test_a_second_varying_key_draws_lines_and_seed_alone_is_the_x_axis(tmp_path):
    rows = [{**r, "k": k, "point": r["point"] + f",k={k}"} for r in _rows("supervision", [0.1, 1.0]) for k in (0, 1)]
    assert choose_axes(["k", "supervision", "seed"], rows) == ("supervision", ["k"])
    written = plot_sweep(["k", "supervision", "seed"], rows, tmp_path)
    _assert_pngs(written)
    table = _read_csv(tmp_path / "accuracy_vs_supervision.csv")
    assert {(r["supervision"], r["k"]) for r in table} == {("0.1", "0"), ("0.1", "1"), ("1.0", "0"), ("1.0", "1")}
    assert choose_axes(["seed"], _rows("seed", [0, 1, 2], seeds=(0,))) == ("seed", [])


def test_plot_command_on_a_sweep_dir_and_bad_input(tmp_path):
    sweep = tmp_path / "sweep"
    write_tables(sweep, ["supervision", "seed"], _rows("supervision", [0.01, 0.1, 1.0]))
    runner = CliRunner()
    result = runner.invoke(app, ["plot", str(sweep), "--format", "pdf"])
    assert result.exit_code == 0, result.output
    pdf = sweep / "figures" / "accuracy_vs_supervision.pdf"
    assert pdf.read_bytes()[:4] == b"%PDF"

    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["plot", str(empty)])
    assert result.exit_code == 2 and "holds no results" in result.output
    assert len(result.output.strip().splitlines()) == 1
    write_tables(empty, ["seed"], [])
    result = runner.invoke(app, ["plot", str(empty)])
    assert result.exit_code == 2 and "no results yet" in result.output
    result = runner.invoke(app, ["plot", str(sweep), "--format", "svg"])
    assert result.exit_code == 2 and "--format" in result.output


def test_run_dir_curves_and_samples(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"epoch": e, "step": 10 * e, "loss": 50.0 / e, "beta": min(1.0, e / 3), "kl": 2.0 + e,
              "elbo_full": -40.0 + e, "elbo_single": -30.0 + e, "elbo_subset": 0.0, "log_lik_image": -30.0 + e,
              "log_lik_shape": -1.0 + 0.1 * e, "valid_elbo": -45.0 + e, "seconds": 1.0, "examples_per_s": 9.0,
              "peak_memory_mb": 1.0} for e in (1, 2, 3, 4)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    (run / "run.json").write_text(json.dumps({"modalities": [{"name": "image", "kind": "image"},
                                                             {"name": "shape", "kind": "categorical"}]}))
    (run / "samples.png").write_bytes(PNG + b"0" * 100)
    written = plot_run(run, run / "figures")
    assert [p.name for p in written] == ["curves.png", "curves.csv", "samples.png"]
    _assert_pngs(written[:1])
    table = _read_csv(run / "figures" / "curves.csv")
    assert [float(r["loss"]) for r in table] == pytest.approx([50.0, 25.0, 50 / 3, 12.5])
    assert list(table[0]) == ["epoch", "loss", "valid_elbo", "elbo_full", "elbo_single", "elbo_subset", "kl",
                              "log_lik_image", "log_lik_shape", "beta"]
    assert (run / "figures" / "samples.png").read_bytes() == (run / "samples.png").read_bytes()
    result = CliRunner().invoke(app, ["plot", str(run), "--out", str(tmp_path / "elsewhere")])
    assert result.exit_code == 0 and (tmp_path / "elsewhere" / "curves.png").is_file()


def _with_references(row, model=None):
    out = dict(row)
    for name in ("shape", "colour"):
        out[f"baseline.{name}"] = row[f"accuracy.{name}"] + 0.2
        out[f"chance.{name}"] = 0.34 if name == "shape" else 0.26
    out["baseline.mean"], out["chance.mean"], out["n_examples"] = row["accuracy.mean"] + 0.2, 0.30, 1000
    if model:
        out["model"] = model
    return out


@pytest.mark.parametrize("key, values, stem", [
    ("supervision", [0.01, 0.1, 1.0], "accuracy_vs_supervision"),
    ("keep_prob", [0.1, 1.0], "figures_vs_keep_prob"),
    ("k", [0, 1], "all_figures_vs_k"),
    ("model.image_net", ["mlp", "conv"], "all_figures_vs_model.image_net"),
])
def test_every_grid_kind_draws_the_baseline_and_chance_beside_the_model(tmp_path, key, values, stem):
    rows = [_with_references(r) for r in _rows(key, values)]
    written = plot_sweep([key, "seed"], rows, tmp_path)
    _assert_pngs(written)
    table = _read_csv(tmp_path / f"{stem}.csv")
    labels = {r["figure"]: r["series"] for r in table}
    assert labels["baseline.mean"].startswith("classifier on the paired rows only")
    assert labels["chance.mean"].startswith("chance (most frequent class)")
    chance = [float(r["mean"]) for r in table if r["figure"] == "chance.mean"]
    assert chance and all(c == pytest.approx(0.30) for c in chance)


def test_supervision_figure_has_a_panel_per_modality_and_a_line_per_model(tmp_path):
    rows = [_with_references(r, model) for model in ("mvae", "mmvae") for r in _rows("supervision", [0.01, 1.0])]
    for r in rows:
        if r["model"] == "mmvae":
            r["accuracy.shape"] -= 0.1
    plot_sweep(["supervision", "seed"], rows, tmp_path)
    table = _read_csv(tmp_path / "accuracy_vs_supervision.csv")
    panels = {r["panel"] for r in table}
    assert panels == {"shape predicted from x alone", "colour predicted from x alone", "mean over predicted modalities"}
    shape = {(r["model"], r["supervision"]): float(r["mean"]) for r in table if r["figure"] == "accuracy.shape"}
    assert shape[("mvae", "0.01")] - shape[("mmvae", "0.01")] == pytest.approx(0.1)
    assert choose_axes(["supervision", "seed"], rows) == ("supervision", ["model"])


def test_a_variance_panel_spanning_orders_of_magnitude_gets_a_log_axis(tmp_path, monkeypatch):
    """Fig. 3 on shapes: q(z | attributes) has log-weight variances in the thousands beside the image
    proposals' units; on a linear axis those lie flat on 0, so the panel switches to a log axis."""
    import mvae_cli.figures.study as study

    drawn = {}
    real_save = study.save_figure

    def keep(fig, path, **kwargs):
        drawn[path] = {ax.get_title(): (ax.get_yscale(), ax.get_ylabel()) for ax in fig.axes}
        return real_save(fig, path, **kwargs)

    monkeypatch.setattr(study, "save_figure", keep)
    rows = _rows("k", [0, 1, 5])
    plot_sweep(["k", "seed"], rows, tmp_path / "near")  # variances 1 to 6: linear
    for r in rows:
        r["var_log_w.joint.image+shape+colour"] = 4000.0 + r["seed"]
    plot_sweep(["k", "seed"], rows, tmp_path / "far")  # 1 to 4,002 in one panel: log
    variance, joint = "Variance of log weights, log p(x, y)", "Joint log-likelihood log p(x, y)"
    near, far = drawn[tmp_path / "near" / "figures_vs_k.png"], drawn[tmp_path / "far" / "figures_vs_k.png"]
    assert near[variance] == ("linear", "Var[log w] [nats²]")
    assert far[variance] == ("log", "Var[log w] [nats²] (log axis)") and far[joint][0] == "linear"
    assert study._log_axis([{"figure": "v.a", "mean": 1.0, "count": 1}, {"figure": "v.a", "mean": 4000.0, "count": 1}],
                           study.Panel("", "", {"v.a": ""})) == 0.0  # only variances


def test_the_subtitle_says_how_many_seeds_each_point_has_when_they_differ(tmp_path, monkeypatch):
    """A study interrupted part way (Fig. 3 with a third seed at small k only): the subtitle must not
    claim the most seeds for every point."""
    import mvae_cli.figures.study as study

    titles = {}
    real_save = study.save_figure

    def keep(fig, path, **kwargs):
        titles[path.name] = fig.get_suptitle()
        return real_save(fig, path, **kwargs)

    monkeypatch.setattr(study, "save_figure", keep)
    plot_sweep(["k", "seed"], _rows("k", [0, 1, 5]), tmp_path / "even")
    even = titles["figures_vs_k.png"]
    plot_sweep(["k", "seed"], _rows("k", [0, 1]) + _rows("k", [5], seeds=(0, 1)), tmp_path / "uneven")
    uneven = titles["figures_vs_k.png"]
    assert "over 3 seeds" in even and "2–3 seeds (as the point has run)" in uneven and "over 3 seeds" not in uneven
