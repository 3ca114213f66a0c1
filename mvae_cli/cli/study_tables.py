"""What ``mvae sweep`` prints at the end of a study: two summary tables and the grouped warnings.

The summary is split in tables so that each fits 80 columns with its numbers whole: the accuracy
of y from x beside the paired-only classifier and chance; the model's accuracy beside the fair
baselines (:mod:`~mvae_cli.evaluate.fair`: linear probes fitted on the paired rows, on the model's
q(z|x) and on an image-only VAE's); then the log-likelihoods.
With several seeds a cell is the mean ± its 95% interval over seeds (Student t), rounded to the
standard error over seeds; with one run per point, the mean ± its standard error over the test
examples. Chance, the same on every run's test examples, has no ±. Every figure is in summary.csv.
"""

from __future__ import annotations

import math

from rich.console import Console, RenderableType
from rich.padding import Padding
from rich.text import Text

from mvae_cli.cli.findings import print_findings
from mvae_cli.cli.tables import add_row, label_column, new_table, number_column, titled
from mvae_cli.evaluate.collapse import accuracy_findings
from mvae_cli.evaluate.diagnostics import findings_from_flat
from mvae_cli.evaluate.reliability import rule, unreliable
from mvae_cli.tables.results import figure_columns, format_value, summary_rows
from mvae_cli.tables.rounding import binomial_se, exact, interval, is_exact

# Summary columns: (family, which proposal, heading); the paper's proposals (Tables 2–3).
_SHOWN = (("accuracy", None, "model"), ("baseline", None, "paired\nonly"), ("chance", None, "chance"),
          ("paired_probe", None, "probe of\nits code"), ("vae_probe", None, "probe of\nimage VAE"),
          ("log_px", "first", "log p(x)\nq(z|x)"),
          ("log_pxy", "last", "log p(x,y)\nq(z|x,y)"), ("log_px_given_y", "last", "log p(x|y)\nq(z|x,y)"))
_ACCURACY = ("accuracy", "baseline", "chance")
_FAIR = ("accuracy", "paired_probe", "vae_probe")
_TARGETS = {"log_px": "marginal", "log_pxy": "joint", "log_px_given_y": "conditional"}
DAGGER = "† "


def summary_columns(figures: list[str]) -> list[tuple[str, str]]:
    """``(column, heading)``: mean accuracy, the paired-only classifier and chance, log p(x) under
    q(z|x), the others under q(z|x,y) (the headings say so)."""
    shown = []
    for family, which, heading in _SHOWN:
        if which is None:
            column = f"{family}.mean" if f"{family}.mean" in figures else None
        else:
            candidates = [f for f in figures if f.startswith(family + ".") and f.endswith(".mean")]
            if which == "last":  # q(z|x,y): the proposal given the most modalities (not q(z|y), listed after it)
                candidates = sorted(candidates, key=lambda f: f.split(".")[1].count("+"))
            column = (candidates[0] if which == "first" else candidates[-1]) if candidates else None
        if column:
            shown.append((column, heading))
    return shown


def scored_modality(figures: list[str]) -> str:
    """x: the proposal of log p(x) given one modality (``log_px.image.mean`` → ``image``), else ``x``."""
    singles = [f.split(".")[1] for f in figures if f.startswith("log_px.") and f.endswith(".mean")
               and "+" not in f.split(".")[1]]
    return singles[0] if singles else "x"


def _mean(rows: list[dict], column: str) -> float:
    values = [r[column] for r in rows if isinstance(r.get(column), (int, float)) and math.isfinite(r[column])]
    return sum(values) / len(values) if values else math.nan


def _cell(column: str, stat: dict, members: list[dict]) -> str:
    """One figure of one grid point as the table prints it (see the module docstring)."""
    mean, std, count = stat["mean"], stat["std"], stat["count"]
    family = column.split(".", 1)[0]
    if count == 0:
        return "–"
    if family == "chance" or (count > 1 and is_exact(std, mean)):
        return exact(mean)
    if count > 1:
        text = interval(mean, std / math.sqrt(count), stat["ci95"])
    elif family in _ACCURACY + _FAIR:
        text = interval(mean, binomial_se(mean, int(_mean(members, "n_examples") or 0)), None)
    else:
        text = interval(mean, _mean(members, column[: -len(".mean")] + ".se"), None)
    if family in _TARGETS:
        proposal = column.split(".")[1]
        if unreliable(_mean(members, f"{family}.{proposal}.ess"),
                      _mean(members, f"var_log_w.{_TARGETS[family]}.{proposal}")):
            text = DAGGER + text
    return text


def summary_tables(rows: list[dict], grid_keys: list[str]) -> list[RenderableType]:
    """The accuracy table and the likelihood table of a study's rows (either left out when the rows
    lack its figures)."""
    groups = [k for k in grid_keys if k != "seed"]
    figures = figure_columns(grid_keys, rows)
    shown = summary_columns(figures)
    if not rows or not shown:
        return []
    stats = summary_rows(rows, groups, [column for column, _ in shown])
    members: dict[tuple, list[dict]] = {}
    for row in rows:
        members.setdefault(tuple(format_value(row.get(k)) for k in groups), []).append(row)
    most = max(s["count"] for s in stats)
    spread = ("mean ± 95% CI over seeds (Student t), rounded to the standard error over seeds" if most > 1
              else "one run per point: ± standard error over the test examples")
    x = scored_modality(figures)
    tables = []
    for part, title in ((_ACCURACY, f"accuracy of y predicted from {x} alone, mean over the predicted modalities"),
                        (_FAIR, "the fair baselines: did the unpaired data give a better code?"),
                        (tuple(_TARGETS), "log-likelihoods [nats]")):
        columns = [(c, h) for c, h in shown if c.split(".", 1)[0] in part]
        if not columns or (part == _FAIR and len(columns) < 2):
            continue
        body, flagged = [], False
        for i in range(0, len(stats), len(shown)):
            chunk = {s["figure"]: s for s in stats[i:i + len(shown)]}
            first = stats[i]
            key = tuple(format_value(first[k]) for k in groups)
            cells = [_cell(c, chunk[c], members[key]) for c, _ in columns]
            flagged = flagged or any(cell.startswith(DAGGER) for cell in cells)
            body.append([*(format_value(first[k]) for k in groups), str(first["count"]), *cells])
        table = new_table()
        for k in groups:
            label_column(table, k)
        number_column(table, "runs", [r[len(groups)] for r in body])
        for j, (_, heading) in enumerate(columns):
            number_column(table, heading, [r[len(groups) + 1 + j] for r in body])
        for r in body:
            add_row(table, r)
        notes = [spread]
        if part == _ACCURACY and any(c.startswith("baseline.") for c, _ in columns):
            notes.append("paired only: a classifier trained on each run's paired rows alone; "
                         "chance: the most frequent class (exact)")
        if part == _FAIR:
            notes.append(f"probe of its code: a linear probe on the model's q(z|{x}) fitted on each run's paired rows "
                         f"alone; probe of image VAE: the same probe on a VAE of every {x} (same networks and "
                         "schedule): a code no better than the image VAE's gained nothing from modelling y")
        if part not in (_ACCURACY, _FAIR):
            notes.append("y: every other modality; per-modality and per-proposal figures are in summary.csv")
        if flagged:
            notes.append(f"† unreliable: {rule()}")
        tables.append(titled(title, table, notes))
    return tables


def remedy_verdicts(rows: list[dict], grid_keys: list[str]) -> list[str]:
    """For a study over ``variant`` and ``supervision`` (the remedies against the paired-only
    classifier): per level, the variant of the highest mean accuracy and whether it beats the
    classifier trained on the pairs alone (:func:`~mvae_cli.sweep.report.best_remedy`)."""
    from mvae_cli.sweep.report import best_remedy

    if "variant" not in grid_keys or "supervision" not in grid_keys:
        return []
    levels = sorted({float(r["supervision"]) for r in rows if isinstance(r.get("supervision"), (int, float))})
    return [line for line in (best_remedy(rows, "variant", level) for level in levels) if line]


def print_summary(rows: list[dict], grid_keys: list[str], console: Console) -> None:
    """Print :func:`summary_tables`, then :func:`remedy_verdicts`."""
    for table in summary_tables(rows, grid_keys):
        console.print(table)
    verdicts = remedy_verdicts(rows, grid_keys)
    if verdicts:
        console.print(Text("does the unpaired data help? the best variant at each level", style="bold"))
        for line in verdicts:
            console.print(Padding(Text(line), (0, 0, 0, 2)))
        console.print("")


def study_findings(rows: list[dict], grid_keys: list[str]) -> list:
    """The findings of every grid point, on means over its seeds: an inactive latent (eval.json's
    ``latent``), a y predicted at chance, or worse than by the paired-only classifier; each holds its
    point's values (``0.01``, or ``0.01/mvae`` for two keys) as ``where``."""
    groups = [k for k in grid_keys if k != "seed"]
    columns = figure_columns(grid_keys, rows)
    figures = [f for f in columns if f.split(".", 1)[0] in ("accuracy", "chance", "baseline", "latent", "probe")]
    x = scored_modality(columns)
    by_point: dict[str, dict[str, dict[str, float]]] = {}
    for s in summary_rows(rows, groups, figures):
        point = "/".join(format_value(s[k]) for k in groups) or "every run"
        family, name = s["figure"].split(".", 1)
        by_point.setdefault(point, {}).setdefault(family, {})[name] = s["mean"]
    found = []
    for point, tables in by_point.items():
        items = findings_from_flat({f"latent.{k}": v for k, v in tables.get("latent", {}).items()})
        if tables.get("chance"):
            # One input modality and one predicted class (MNIST's image → label): the probe reads that class.
            probe, accuracy = tables.get("probe", {}), tables.get("accuracy", {})
            predicted = [k for k in accuracy if k != "mean" and "/" not in k]
            probe_x = next(iter(probe)) if len(probe) == 1 else x
            probed = predicted[0] if len(probe) == 1 and len(predicted) == 1 else None
            items += accuracy_findings(accuracy, tables["chance"], tables.get("baseline"), probe_x, probe, probed)
        found += [f.at(point) for f in items]
    return found


def print_warnings(rows: list[dict], grid_keys: list[str], console: Console) -> None:
    """Print :func:`study_findings`: one entry per kind of finding, each remedy once."""
    groups = [k for k in grid_keys if k != "seed"]
    what = "/".join(groups) if groups else "every run"
    print_findings(study_findings(rows, grid_keys), console,
                   note=f"means over seeds; in brackets the grid points ({what}) where each holds")
