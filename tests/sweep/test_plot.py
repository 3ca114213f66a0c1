"""The figures of a sweep and of a run: their numbers (CSV) and, read from the matplotlib objects, what
each draws: its lines per panel, one legend, and the colours of docs/figures.md."""

import csv
import json
import os

import matplotlib.pyplot as plt
import pytest
from matplotlib.colors import to_rgba
from typer.testing import CliRunner

from mvae_cli.cli.app import app
from mvae_cli.figures.curves import plot_run, run_figure
from mvae_cli.figures.study import choose_axes, plot_sweep, study_figures
from mvae_cli.figures.style import BASELINE, CHANCE, MEAN, MODEL, PALETTE
from mvae_cli.tables.results import write_tables

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")  # the figures a test inspects and never saves
ATTRIBUTES = ("shape", "colour")


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


def _with_references(row, model=None):
    out = dict(row)
    for name in ATTRIBUTES:
        out[f"baseline.{name}"] = row[f"accuracy.{name}"] + 0.2
        out[f"chance.{name}"] = 0.34 if name == "shape" else 0.26
    out["baseline.mean"], out["chance.mean"], out["n_examples"] = row["accuracy.mean"] + 0.2, 0.30, 1000
    if model:
        out["model"] = model
    return out


def _study_row(supervision, seed, model=None):
    """A shapes-like results row: the image scored, shape the class, colour an attribute; three proposals,
    q(z | y) unreliable (ESS 1.3, Var[log w] 6e5); coherence per subset size and the latent probe."""
    row = _with_references(_row("supervision", supervision, seed), model)
    for family in ("log_px", "log_pxy", "log_px_given_y"):
        for proposal, shift, ess in (("image", 0.0, 40.0), ("image+shape+colour", 0.3, 38.0), ("shape+colour", -15, 1.3)):
            row[f"{family}.{proposal}.mean"] = -100.0 + 10 * supervision + shift - seed
            row[f"{family}.{proposal}.se"], row[f"{family}.{proposal}.ess"] = 0.5, ess
    for target in ("marginal", "joint", "conditional"):
        row.update({f"var_log_w.{target}.image": 20.0, f"var_log_w.{target}.image+shape+colour": 18.0,
                    f"var_log_w.{target}.shape+colour": 6.0e5})
    row.update({"coherence.cross_by_size.1": 0.4 + 0.1 * supervision, "coherence.cross_by_size.2": 0.45,
                "coherence.joint": 0.3, "coherence.cross.shape.1": 0.4, "coherence.cross.image.1": 0.4,
                "coherence.classifier_accuracy.image": 0.99,
                "probe.image": 0.5 + 0.01 * seed, "probe.colour": 0.35, "probe.image+colour": 0.55})
    return row


def _study_rows(models=(None,), supervisions=(0.01, 0.1, 1.0)):
    return [_study_row(f, s, m) for m in models for f in supervisions for s in (0, 1, 2)]


def _figures(rows, grid_keys=("supervision", "seed")):
    return {f.stem: f for f in study_figures(list(grid_keys), rows)}


def _series(ax):
    """The lines through the means: ``{results column: [Line2D, ...]}``."""
    found = {}
    for line in ax.get_lines():
        gid = line.get_gid() or ""
        if gid.startswith("series:"):
            found.setdefault(gid[len("series:"):], []).append(line)
    return found


def _colour(line):
    return to_rgba(line.get_color())


def _one_legend(figure):
    assert len(figure.legends) == 1 and all(ax.get_legend() is None for ax in figure.axes)
    return [t.get_text() for t in figure.legends[0].get_texts()]


def _read_csv(path):
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _assert_pngs(paths):
    figures = [p for p in paths if p.suffix == ".png"]
    assert figures
    for path in figures:
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000, path


@pytest.mark.parametrize("key, values, stems", [
    ("supervision", [0.0, 0.01, 0.1, 1.0], ["accuracy_vs_supervision", "likelihoods_vs_supervision"]),
    ("keep_prob", [0.1, 0.5, 1.0], ["figures_vs_keep_prob", "accuracy_vs_keep_prob", "likelihoods_vs_keep_prob"]),
    ("k", [0, 1, 5], ["figures_vs_k", "accuracy_vs_k", "likelihoods_vs_k"]),
    ("model.hidden", [16, 64], ["accuracy_vs_model.hidden", "likelihoods_vs_model.hidden"]),
    ("model.image_net", ["mlp", "conv"], ["accuracy_vs_model.image_net", "likelihoods_vs_model.image_net"]),
])
def test_each_grid_kind_gets_its_figures_and_numbers(tmp_path, key, values, stems):
    written = plot_sweep([key, "seed"], _rows(key, values), tmp_path)
    _assert_pngs(written)
    assert sorted(p.name for p in written) == sorted(f"{s}.{e}" for s in stems for e in ("png", "csv"))
    stem = stems[0] if key != "k" else "accuracy_vs_k"
    table = _read_csv(tmp_path / f"{stem}.csv")
    first = str(values[0])
    x = values[0] if isinstance(values[0], (int, float)) else len(values[0])
    acc = next(r for r in table if r[key] == first and r["figure"] == "accuracy.mean")
    assert float(acc["mean"]) == pytest.approx(0.45 + 0.05 * x + 0.01)  # seeds 0, 1, 2 -> mean +0.01
    assert float(acc["std"]) == pytest.approx(0.01) and acc["count"] == "3"
    assert float(acc["ci95"]) == pytest.approx(4.302653 * 0.01 / 3 ** 0.5)
    if key == "k":
        var = [float(r["mean"]) for r in _read_csv(tmp_path / "figures_vs_k.csv")
               if r["figure"] == "var_log_w.joint.image"]
        assert var == pytest.approx([6.0, 3.0, 1.0])
        assert {r["figure"] for r in _read_csv(tmp_path / "figures_vs_k.csv")} == {
            "log_pxy.image.mean", "log_pxy.image+shape+colour.mean", "var_log_w.joint.image",
            "var_log_w.joint.image+shape+colour"}


def test_the_accuracy_figure_has_a_panel_per_modality_three_colours_and_one_legend():
    figure = _figures(_study_rows())["accuracy_vs_supervision"].figure
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["shape predicted from image", "colour predicted from image",
                                               "mean over the 2 predicted modalities"]
    for ax, name in zip(axes, ("shape", "colour", "mean")):
        lines = _series(ax)
        assert list(lines) == [f"accuracy.{name}", f"baseline.{name}", f"chance.{name}"]
        model, baseline, chance = (ls[0] for ls in lines.values())
        assert (_colour(model), _colour(baseline), _colour(chance)) == (to_rgba(MODEL), to_rgba(BASELINE),
                                                                        to_rgba(CHANCE))
        assert (model.get_linestyle(), baseline.get_linestyle(), chance.get_linestyle()) == ("-", "--", ":")
        # n = 3: each seed a dot (3 per level) and a band for the model and the classifier, none for chance
        seeds = [l for l in ax.get_lines() if l.get_gid() == "seeds"]
        assert len(seeds) == 2 and all(len(l.get_xdata()) == 9 for l in seeds)
        assert sum(c.get_gid() == "band" for c in ax.collections) == 2
    labels = _one_legend(figure)
    assert labels[:3] == ["multimodal model", "classifier on the paired rows only", "chance (most frequent class)"]
    assert labels[3].startswith("dots: individual seeds") and len(labels) == 4


def test_a_second_model_gets_its_colour_and_the_line_style_says_what_a_line_is():
    rows = _study_rows(models=("mvae", "mmvae"))
    for r in rows:
        if r["model"] == "mmvae":
            r["accuracy.shape"] -= 0.1
    figure = _figures(rows)["accuracy_vs_supervision"].figure
    lines = _series(figure.axes[0])
    assert len(lines["accuracy.shape"]) == 2 and len(lines["baseline.shape"]) == 1 and len(lines["chance.shape"]) == 1
    mvae, mmvae = lines["accuracy.shape"]
    assert _colour(mvae) == to_rgba(PALETTE[0]) and _colour(mmvae) == to_rgba(PALETTE[1])
    assert {l.get_linestyle() for l in lines["accuracy.shape"]} == {"-"}
    assert _colour(lines["baseline.shape"][0]) == to_rgba(BASELINE)  # the same for both models: drawn once
    labels = _one_legend(figure)
    assert "multimodal model, model=mvae" in labels and "multimodal model, model=mmvae" in labels
    assert "classifier on the paired rows only" in labels
    # more than three lines in a panel: the intervals as bars, side by side, not bands over each other
    assert not any(c.get_gid() == "band" for c in figure.axes[0].collections)
    assert sum(c.get_gid() == "bars" for c in figure.axes[0].collections) == 3  # two models, one classifier
    assert choose_axes(["supervision", "seed"], rows) == ("supervision", ["model"])


def test_the_likelihood_figure_draws_each_proposal_in_its_colour_and_the_unreliable_one_hollow():
    figure = _figures(_study_rows())["likelihoods_vs_supervision"].figure
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible()]
    assert titles[:3] == ["log p(x), x = image", "log p(x, y), x = image", "log p(x | y), x = image"]
    assert titles[3].startswith("Var[log w] of the joint target")
    for ax in figure.axes[:3]:
        lines = _series(ax)
        assert len(lines) == 3 and len({_colour(ls[0]) for ls in lines.values()}) == 3
        hollow = [l for l in ax.get_lines() if l.get_gid() == "unreliable"]
        assert len(hollow) == 1 and hollow[0].get_markerfacecolor() == "white"
        assert to_rgba(hollow[0].get_color()) == _colour(next(ls[0] for c, ls in lines.items() if ".shape+colour." in c))
        # the first proposal is drawn widest, so one that coincides with it stays visible
        widths = [ls[0].get_linewidth() for ls in lines.values()]
        assert widths == sorted(widths, reverse=True) and widths[0] > widths[1]
    assert figure.axes[3].get_yscale() == "log"  # 18 beside 600,000
    labels = _one_legend(figure)
    assert labels[:3] == ["q(z | x), x = image", "q(z | x, y): every modality", "q(z | y), y = shape, colour (unreliable)"]
    assert figure.legends[0].legend_handles[2].get_markerfacecolor() == "white"
    assert any(l.startswith("hollow: unreliable estimate (ESS < 2 or Var[log w] > 1,000") for l in labels)


def test_coherence_and_the_probe_have_figures_of_their_own_with_chance():
    figures = _figures(_study_rows())
    coherence = figures["coherence_vs_supervision"].figure
    (ax,) = [a for a in coherence.axes if a.get_visible()]
    lines = _series(ax)
    assert list(lines) == ["coherence.cross_by_size.1", "coherence.cross_by_size.2", "coherence.joint", "chance.shape"]
    colours = [_colour(ls[0]) for ls in lines.values()]
    assert len(set(colours)) == 4 and colours[2] == to_rgba(MEAN) and colours[3] == to_rgba(CHANCE)
    assert "right shape" in coherence.get_suptitle()
    assert _one_legend(coherence)[:4] == ["cross-modal, 1 modality given", "cross-modal, 2 modalities given",
                                          "joint: every modality from z ~ p(z)", "chance (most frequent shape)"]
    probe = figures["probe_vs_supervision"].figure
    lines = _series(probe.axes[0])
    assert list(lines) == ["probe.image", "probe_by_size.1", "probe_by_size.2", "chance.shape"]
    assert "shape read from the mean of q(z | S)" in probe.get_suptitle()  # the probe's target, named
    labels = _one_legend(probe)
    assert labels[:4] == ["S = {image}", "S of 1 modality (mean of 2)", "S of 2 modalities (mean of 1)",
                          "chance (most frequent shape)"]
    table = {(r["supervision"], r["figure"]): float(r["mean"]) for r in figures["probe_vs_supervision"].table}
    assert table[(0.01, "probe_by_size.1")] == pytest.approx((0.51 + 0.35) / 2)  # image and colour, seeds 0-2


def test_with_two_models_coherence_gets_a_panel_per_model():
    figure = _figures(_study_rows(models=("mvae", "mmvae")))["coherence_vs_supervision"].figure
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["model=mvae", "model=mmvae"]
    assert all(len(_series(ax)) == 4 for ax in axes) and len(figure.legends) == 1


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


def test_plot_without_a_path_draws_the_most_recent_sweep_or_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["plot"])
    assert result.exit_code == 2 and "no sweep under sweeps/ and no run under runs/" in result.output
    write_tables(tmp_path / "sweeps" / "old", ["supervision", "seed"], _rows("supervision", [0.01, 1.0]))
    run = _write_run(tmp_path / "runs" / "new")
    os.utime(tmp_path / "sweeps" / "old" / "results.json", (1, 1))
    result = runner.invoke(app, ["plot"])
    assert result.exit_code == 0, result.output
    assert "plotting runs/new" in result.output and (run / "figures" / "curves.png").is_file()
    write_tables(tmp_path / "sweeps" / "newer", ["supervision", "seed"], _rows("supervision", [0.01, 1.0]))
    result = runner.invoke(app, ["plot"])
    assert "plotting sweeps/newer" in result.output
    assert (tmp_path / "sweeps" / "newer" / "figures" / "accuracy_vs_supervision.png").is_file()


def _write_run(run, betas=None):
    run.mkdir(parents=True)
    lines = [{"epoch": e, "step": 10 * e, "loss": 50.0 / e, "beta": min(1.0, e / 3) if betas is None else betas,
              "kl": 2.0 + e, "elbo_full": -40.0 + e, "elbo_single": -30.0 + e, "elbo_subset": 0.0,
              "log_lik_image": -30.0 + e, "log_lik_shape": -1.0 + 0.1 * e, "valid_elbo": -45.0 + e, "seconds": 1.0,
              "examples_per_s": 9.0, "peak_memory_mb": 1.0, "latent.image.active_units": 3.0,
              "latent.image.latent_dim": 4.0, "latent.shape.active_units": 1.0, "latent.shape.latent_dim": 4.0}
             for e in (1, 2, 3, 4)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    (run / "config.yaml").write_text("epochs: 4\n")
    (run / "run.json").write_text(json.dumps({"modalities": [{"name": "image", "kind": "image"},
                                                             {"name": "shape", "kind": "categorical"}]}))
    (run / "samples.png").write_bytes(PNG + b"0" * 100)
    return run


def test_run_dir_curves_and_samples(tmp_path):
    run = _write_run(tmp_path / "run")
    written = plot_run(run, run / "figures")
    assert [p.name for p in written] == ["curves.png", "curves.csv", "samples.png"]
    _assert_pngs(written[:1])
    table = _read_csv(run / "figures" / "curves.csv")
    assert [float(r["loss"]) for r in table] == pytest.approx([50.0, 25.0, 50 / 3, 12.5])
    assert list(table[0]) == ["epoch", "loss", "valid_elbo", "elbo_full", "elbo_single", "elbo_subset", "kl",
                              "log_lik_image", "log_lik_shape", "beta", "latent.image.active_units",
                              "latent.shape.active_units"]
    assert (run / "figures" / "samples.png").read_bytes() == (run / "samples.png").read_bytes()
    result = CliRunner().invoke(app, ["plot", str(run), "--out", str(tmp_path / "elsewhere")])
    assert result.exit_code == 0 and (tmp_path / "elsewhere" / "curves.png").is_file()


def test_the_curves_keep_a_colour_per_modality_and_one_legend(tmp_path):
    figure, drawn, _ = run_figure(_write_run(tmp_path / "annealed"))
    by_title = {ax.get_title().split("\n")[0]: _series(ax) for ax in figure.axes if ax.get_visible()}
    image = _colour(by_title["Log-likelihood, image modalities"]["log_lik_image"][0])
    shape = _colour(by_title["Log-likelihood, other modalities"]["log_lik_shape"][0])
    units = by_title["Active units of q(z | m) (Cov E[z] > 0.01)"]
    assert _colour(units["latent.image.active_units"][0]) == image == to_rgba(PALETTE[0])
    assert _colour(units["latent.shape.active_units"][0]) == shape == to_rgba(PALETTE[1])
    terms = by_title["Training ELBO terms"]
    assert [l[0].get_linestyle() for l in terms.values()] == ["-", "--", ":"]
    assert {_colour(l[0]) for l in terms.values()} == {to_rgba(MEAN)}
    labels = _one_legend(figure)
    assert labels == ["ELBO term: all observed modalities", "ELBO term: each single modality",
                      "ELBO term: random subsets (k)", "image", "shape"]
    assert "beta" in drawn
    # a constant β is said in the title, not drawn as a flat panel
    figure, drawn, _ = run_figure(_write_run(tmp_path / "constant", betas=1.0))
    assert "beta" not in drawn and "β = 1 throughout" in figure.get_suptitle()


@pytest.mark.parametrize("key, values", [("supervision", [0.01, 0.1, 1.0]), ("keep_prob", [0.1, 0.5, 1.0]),
                                         ("k", [0, 1, 5]), ("model.image_net", ["mlp", "conv"])])
def test_every_figure_has_one_legend_and_a_colour_per_line_in_each_panel(key, values):
    rows = []
    for value in values:
        for seed in (0, 1, 2):
            row = _study_row(0.1, seed)
            row.update({"point": f"{key}={value},seed={seed}", key: value})
            if key != "supervision":
                row.pop("supervision")
            rows.append(row)
    figures = study_figures([key, "seed"], rows)
    assert len(figures) >= 4
    for figure in figures:
        labels = _one_legend(figure.figure)
        for ax in (a for a in figure.figure.axes if a.get_visible()):
            lines = _series(ax)
            assert lines, (figure.stem, ax.get_title())
            assert all(len(drawn) == 1 for drawn in lines.values())  # one study: one line per series
            colours = [_colour(drawn[0]) for drawn in lines.values()]
            assert len(set(colours)) == len(colours), (figure.stem, ax.get_title())
        drawn = {c for ax in figure.figure.axes for c in _series(ax)}
        named = {label.removesuffix(" (unreliable)") for label in labels}
        assert {r["series"] for r in figure.table} <= named  # every line drawn is in the one legend
        assert {r["figure"] for r in figure.table} == drawn  # the CSV holds exactly what is drawn


def test_one_colour_means_one_thing_across_the_panels_of_a_figure():
    rows = []
    for value in (0.1, 0.5, 1.0):
        for seed in (0, 1, 2):
            row = _study_row(0.1, seed)
            row.pop("supervision")
            rows.append({**row, "point": f"keep_prob={value},seed={seed}", "keep_prob": value})
    figure = _figures(rows, ("keep_prob", "seed"))["figures_vs_keep_prob"].figure
    meaning = {}
    for ax in figure.axes:
        for column, drawn in _series(ax).items():
            what = column.split(".")[1] if column.startswith(("log_px.", "log_pxy.", "log_px_given_y.")) else column
            meaning.setdefault(_colour(drawn[0]), set()).add(what)
    assert all(len(things) == 1 for things in meaning.values()), meaning


def test_the_fair_baselines_are_drawn_beside_the_paired_only_classifier_each_in_its_colour_and_style():
    from mvae_cli.figures.style import PROBE, VAE_PROBE

    single = _study_rows()
    for r in single:
        for name in ATTRIBUTES + ("mean",):
            r[f"paired_probe.{name}"] = r[f"accuracy.{name}"] + 0.05
            r[f"vae_probe.{name}"] = 0.5 + 0.1 * r["supervision"] + 0.01 * r["seed"]
    figures = _figures(single)
    assert "fair_baselines_vs_supervision" not in figures  # one line per panel: they sit in the accuracy figure
    lines = _series(figures["accuracy_vs_supervision"].figure.axes[0])
    (probe,), (vae,) = lines["paired_probe.shape"], lines["vae_probe.shape"]
    assert _colour(probe) == to_rgba(PROBE) and probe.get_linestyle() == "-."
    assert _colour(vae) == to_rgba(VAE_PROBE)
    assert tuple(vae._unscaled_dash_pattern[1]) == (6, 2, 1, 2, 1, 2)  # dash-dot-dot, a style of its own
    labels = _one_legend(figures["accuracy_vs_supervision"].figure)
    assert "linear probe on the model's q(z | image), fitted on the paired rows" in labels
    assert "the same probe on an image-only VAE of every image" in labels
    # two models: the accuracy figure keeps its three lines a model; the fair baselines get a figure, a panel each
    rows = _study_rows(models=("mvae", "mmvae"))
    for r in rows:
        for name in ATTRIBUTES + ("mean",):
            r[f"paired_probe.{name}"] = r[f"accuracy.{name}"] + (0.05 if r["model"] == "mvae" else -0.05)
            r[f"vae_probe.{name}"] = 0.5 + 0.1 * r["supervision"] + 0.01 * r["seed"]
    figures = _figures(rows)
    assert not any(k.startswith(("paired_probe", "vae_probe")) for k in _series(figures["accuracy_vs_supervision"].figure.axes[0]))
    fair = [ax for ax in figures["fair_baselines_vs_supervision"].figure.axes if ax.get_visible()]
    assert len(fair) == 2
    for ax in fair:
        assert set(_series(ax)) == {"accuracy.mean", "baseline.mean", "paired_probe.mean", "vae_probe.mean",
                                    "chance.mean"}
    one = _figures(_study_rows(models=("mvae", "mmvae")))  # without the probes: no such figure
    assert "fair_baselines_vs_supervision" not in one
