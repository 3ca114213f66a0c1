"""`mvae report` on hand-made results: the paper's tables with mean ± 95% CI over seeds."""

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from mvae_cli.cli.app import app
from mvae_cli.sweep.report import build_report
from mvae_cli.tables.results import write_tables

runner = CliRunner()
GRID = ["model.name", "data.dataset", "seed"]


def _rows():
    rows = []
    for model, shift in (("mvae", 0.0), ("jmvae", -2.0)):
        for dataset, base in (("mnist", -90.0), ("fashion-mnist", -230.0)):
            for seed, noise in zip((0, 1, 2), (-1.0, 0.0, 1.0)):
                rows.append({"point": f"model.name={model},data.dataset={dataset},seed={seed}", "model.name": model,
                             "data.dataset": dataset, "seed": seed,
                             "log_px.image.mean": base + shift + noise, "log_px.image.se": 0.1,
                             "log_pxy.image+label.mean": base + shift - 3.0,
                             "var_log_w.joint.image+label": 4.0 + seed})
    return rows


def _long(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_tables_hold_the_mean_and_the_t_interval_over_seeds():
    markdown, long, _ = build_report(GRID, _rows())
    # three seeds at −1, 0, +1 around the mean: std 1, CI half-width t(2) · 1 / √3 = 4.302653 / 1.732051 = 2.4841
    cell = next(c for c in long if c["figure"] == "log_px.image.mean" and c["row"] == "jmvae"
                and c["column"] == "fashion-mnist")
    assert cell["mean"] == pytest.approx(-232.0) and cell["ci95"] == pytest.approx(2.4841, abs=1e-4)
    assert cell["count"] == 3
    assert "| model | mnist | fashion-mnist |" in markdown
    assert "| mvae | -90.00 ± 2.48 | -230.00 ± 2.48 |" in markdown
    assert "| jmvae | -92.00 ± 2.48 | -232.00 ± 2.48 |" in markdown
    # a figure equal over seeds has a zero-width interval; the variance table is there too
    assert "| mvae | -93.00 ± 0.00 | -233.00 ± 0.00 |" in markdown
    assert "Var[log w] of log p(x, y)" in markdown and "| mvae | 5.00 ± 2.48 | 5.00 ± 2.48 |" in markdown
    assert "log p(x) [nats] under q(z | image)" in markdown


def test_without_a_model_or_dataset_key_columns_are_the_grid_values():
    rows = [{"point": f"supervision={f},seed={s}", "supervision": f, "seed": s, "log_px.image.mean": -100.0 + s}
            for f in (0.1, 1.0) for s in (0, 1)]
    markdown, long, _ = build_report(["supervision", "seed"], rows, model_name="mvae")
    assert "| model | supervision=0.1 | supervision=1.0 |" in markdown
    assert "| mvae | -99.50 ± 6.35 | -99.50 ± 6.35 |" in markdown  # t(1) · 0.7071 / √2 = 6.3531


def test_report_command_writes_markdown_and_csv_with_parameter_counts(tmp_path):
    rows = _rows()
    write_tables(tmp_path, GRID, rows)
    run = tmp_path / "runs" / rows[0]["point"]
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"parameters": {"inference": 1063680, "total": 2127360}}))
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "report.md").read_text()
    assert "### Table 1: parameters (inference)" in markdown and "| mvae | 1,063,680 | – |" in markdown
    long = _long((tmp_path / "report.csv").read_text())
    assert {r["table"] for r in long} >= {"Table 1: parameters (total)"}
    assert "| jmvae | -92.00 ± 2.48 |" in result.output
    assert not (tmp_path / "paper.png").exists()  # nothing of these runs is in the paper's tables


def test_report_on_a_directory_without_results_is_one_line(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "results.json" in result.output and "Traceback" not in result.output


def test_a_supervision_sweep_reports_fig4_against_full_supervision_and_the_baseline():
    rows = [{"point": f"supervision={f},seed={s}", "supervision": f, "seed": s, "accuracy.mean": acc + 0.01 * s,
             "baseline.mean": base, "chance.mean": 0.1}
            for f, acc, base in ((0.01, 0.90, 0.84), (0.1, 0.94, 0.93), (1.0, 0.96, 0.97)) for s in (0, 1)]
    markdown, long, _ = build_report(["supervision", "seed"], rows, model_name="mvae")
    # 1%: mean 0.905 against the fully paired 0.965: 0.060 below
    # (± the 95% interval over the two seeds: t(1) = 12.706 × 0.00707 / √2 = 0.064)
    assert "| mvae | 0.01 | 0.905 ± 0.064 | -0.060 | 0.840 | 0.100 |" in markdown
    assert "| mvae | 1 | 0.965 ± 0.064 | +0.000 | 0.970 | 0.100 |" in markdown
    assert ("- mvae: at 0.01 paired, accuracy 0.905 ± 0.064; 0.060 below the fully paired 0.965 (outside the paper's "
            "0.02 on MNIST); above the paired-only classifier's 0.840.") in markdown
    assert any(r["table"].startswith("Fig. 4") and r["column"] == "supervision=0.01" for r in long)
    assert "probe of its code" not in markdown  # no fair baselines in these rows: no columns for them


def test_a_remedies_sweep_reports_the_fair_baselines_and_names_the_best_remedy():
    rows = [{"point": f"{v},{f},{s}", "variant": v, "supervision": f, "seed": s, "accuracy.mean": acc + 0.01 * s,
             "baseline.mean": 0.80, "chance.mean": 0.1, "paired_probe.mean": probe, "vae_probe.mean": 0.70}
            for v, f, acc, probe in (("paper", 0.01, 0.40, 0.60), ("paper", 0.1, 0.85, 0.80),
                                     ("share", 0.01, 0.84, 0.75), ("share", 0.1, 0.90, 0.85))
            for s in (0, 1)]
    markdown, long, _ = build_report(["variant", "supervision", "seed"], rows, model_name="mvae")
    assert "| variant | supervision | accuracy | Δ full | paired-only classifier | probe of its code | " \
           "probe of image VAE | chance |" in markdown
    assert "| share | 0.01 | 0.845 ± 0.064 | – | 0.800 | 0.750 | 0.700 | 0.100 |" in markdown
    assert ("- paper: at 0.01 paired, accuracy 0.405 ± 0.064; not above the paired-only classifier's 0.800; its code "
            "read by a probe fitted on the pairs 0.600, not above the image-only VAE's 0.700.") in markdown
    assert ("- best at 0.01 paired: variant share, accuracy 0.845 ± 0.064: it beats the paired-only classifier's "
            "0.800 ± 0.000 by 0.045 ± 0.064 (each seed against the classifier of its own pairs), a difference the seeds "
            "do not tell from none.") in markdown
    assert {r["figure"] for r in long if r["table"].startswith("Fig. 4")} == {
        "accuracy.mean", "baseline.mean", "paired_probe.mean", "vae_probe.mean"}


def test_a_best_remedy_below_the_classifier_is_said_to_be_below_it_by_a_positive_margin():
    from mvae_cli.sweep.report import best_remedy

    # seeds 0.70 and 0.72 against their classifiers' 0.90 and 0.91: differences −0.20 and −0.19,
    # mean −0.195 ± t(1)·0.00707/√2 = 0.064
    rows = [{"variant": "cross", "supervision": 0.1, "seed": s, "accuracy.mean": 0.70 + 0.02 * s,
             "baseline.mean": 0.90 + 0.01 * s} for s in (0, 1)]
    assert best_remedy(rows, "variant", 0.1) == (
        "best at 0.1 paired: variant cross, accuracy 0.710 ± 0.127: it is below the paired-only classifier's "
        "0.905 ± 0.064 by 0.195 ± 0.064 (each seed against the classifier of its own pairs).")


def test_a_grid_key_beside_the_dataset_keeps_its_runs_apart():
    # model × dataset × supervision × seed: the two levels must not be averaged into one cell
    rows = [{"point": f"p{f}{s}", "model.name": "mvae", "data.dataset": "mnist", "supervision": f, "seed": s,
             "log_px.image.mean": (-100.0 if f == 0.1 else -90.0) + s} for f in (0.1, 1.0) for s in (0, 1)]
    markdown, long, _ = build_report(["model.name", "data.dataset", "supervision", "seed"], rows)
    assert "| model | mnist (supervision=0.1) | mnist (supervision=1.0) |" in markdown
    assert "| mvae | -99.50 ± 6.35 | -89.50 ± 6.35 |" in markdown
    assert {c["count"] for c in long} == {2}
