"""The tables of a sweep: one row per run, and a summary per grid point over seeds.

```
SWEEP_DIR/results.json  {"grid": [keys], "columns": [...], "rows": [{column: value}]}
SWEEP_DIR/results.csv   the same rows
SWEEP_DIR/summary.csv   per grid point (every grid key but seed) and figure: mean, std, ci95, count
```

A row holds the point name, its grid values, the seed, every number of ``eval.json``
flattened with dots (``log_px.image.mean``, ``var_log_w.joint.image+label``,
``accuracy.mean``, ``baseline.label``, ``chance.label``), ``n_examples`` (scored), and
``train_seconds``, ``eval_seconds``, ``best_valid_elbo``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any, Iterable

from mvae_cli.atomic import write_json, write_text
from mvae_cli.errors import UserError
from mvae_cli.eval_config import RECORDED_SETTINGS
from mvae_cli.tables.stats import summarize

# eval.json keys that describe the evaluation (its settings, size and time) rather than measure the model.
EVAL_METADATA = (*RECORDED_SETTINGS, "n_examples", "seconds", "seconds_by_part")
RESULTS_JSON, RESULTS_CSV, SUMMARY_CSV = "results.json", "results.csv", "summary.csv"
SUMMARY_STATS = ("mean", "std", "ci95", "count")


_UNSAFE = re.compile(r"[^A-Za-z0-9._+\-]")  # characters a point name (a folder) does not take


def format_value(value: Any) -> str:
    """A grid value as it appears in a point name: ``0.01``, ``1.0``, ``3``, ``mlp``, ``true``."""
    if isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, (int, float, str)):
        text = repr(value) if isinstance(value, float) else str(value)
    else:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return _UNSAFE.sub("_", text)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def flatten_eval(evaluation: dict) -> dict[str, float]:
    """Every number of an ``eval.json`` mapping under its dotted path, settings left out."""
    flat: dict[str, float] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}", value)
        elif _is_number(node):
            flat[prefix] = float(node)

    for key, value in evaluation.items():
        if key not in EVAL_METADATA:
            walk(key, value)
    return flat


def build_row(name: str, values: dict[str, Any], seed: int, evaluation: dict, run_info: dict) -> dict[str, Any]:
    """The results row of one finished run."""
    row: dict[str, Any] = {"point": name, **values}
    row.setdefault("seed", seed)
    row.update(flatten_eval(evaluation))
    row["n_examples"] = evaluation.get("n_examples")  # how many test examples each figure scored
    row["train_seconds"] = run_info.get("train_seconds")
    row["eval_seconds"] = evaluation.get("seconds")
    row["best_valid_elbo"] = run_info.get("best_valid_elbo")
    return row


def _columns(grid_keys: list[str], rows: list[dict]) -> list[str]:
    columns = ["point", *grid_keys] + ([] if "seed" in grid_keys else ["seed"])
    for row in rows:
        columns += [key for key in row if key not in columns]
    return columns


def figure_columns(grid_keys: list[str], rows: list[dict]) -> list[str]:
    """The numeric columns that measure a run (not the point name, grid values or seed)."""
    fixed = {"point", "seed", *grid_keys}
    return [c for c in _columns(grid_keys, rows) if c not in fixed and any(_is_number(r.get(c)) for r in rows)]


def summary_rows(rows: list[dict], group_keys: list[str], figures: list[str]) -> list[dict[str, Any]]:
    """Mean, std, 95% CI half-width and count of every figure per group of rows.

    Args:
        rows: results rows.
        group_keys: the columns whose values define a group (every grid key but seed).
        figures: the numeric columns to summarise.

    Returns:
        One row per (group, figure), groups in order of first appearance.
    """
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(json.dumps([row.get(k) for k in group_keys]), []).append(row)
    out = []
    for members in groups.values():
        for figure in figures:
            stats = summarize(r.get(figure) for r in members)
            out.append({**{k: members[0].get(k) for k in group_keys}, "figure": figure,
                        "mean": stats.mean, "std": stats.std, "ci95": stats.ci95, "count": stats.count})
    return out


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return repr(value) if isinstance(value, float) else str(value)


def csv_text(columns: list[str], rows: Iterable[dict]) -> str:
    """``rows`` as CSV with a header; missing and NaN cells empty, floats at full precision."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def _json_safe(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_tables(out: Path, grid_keys: list[str], rows: list[dict]) -> None:
    """Write results.json, results.csv and summary.csv into ``out``, each atomically."""
    out = Path(out)
    columns = _columns(grid_keys, rows)
    write_json(out / RESULTS_JSON, {"grid": grid_keys, "columns": columns,
                                    "rows": [{k: _json_safe(v) for k, v in r.items()} for r in rows]})
    write_text(out / RESULTS_CSV, csv_text(columns, rows))
    group_keys = [k for k in grid_keys if k != "seed"]
    summary = summary_rows(rows, group_keys, figure_columns(grid_keys, rows))
    write_text(out / SUMMARY_CSV, csv_text([*group_keys, "figure", *SUMMARY_STATS], summary))


def read_results(sweep_dir: str | Path) -> tuple[list[str], list[dict]]:
    """``(grid keys, rows)`` of a sweep directory's results.json.

    Raises:
        UserError: no results.json, an unreadable one, or one without rows.
    """
    path = Path(sweep_dir) / RESULTS_JSON
    if not path.is_file():
        raise UserError(f"{sweep_dir} has no {RESULTS_JSON}: run the study with `mvae sweep` first")
    try:
        data = json.loads(path.read_text())
        grid_keys, rows = list(data["grid"]), list(data["rows"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} is not a results file written by `mvae sweep`") from None
    if not rows:
        raise UserError(f"{path} holds no results yet: no point of the sweep has finished")
    return grid_keys, rows
