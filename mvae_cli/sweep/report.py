"""The MVAE paper's tables from a sweep's results (Wu & Goodman 2018, Tables 1–5).

Rows are models (the grid key ``model.name``, else a ``model`` column of the results, else
one row for the sweep's model); columns are datasets (``data.dataset`` or ``data.path`` in
the grid) or, without them, the values of the other grid keys (seed excluded). A cell is the
mean over seeds ± the half-width of its 95% Student-t interval (:func:`~mvae_cli.tables.stats.summarize`).

- Table 1: parameter counts, from each run's ``run.json`` (``model.parameters``) when present, else
  counted on the model its recipe builds: the inference networks (encoders) and the total.
- Tables 2–3: log-likelihoods, one table per figure (log p(x), log p(x, y), log p(x | y)) and
  proposal, from the ``.mean`` columns.
- Tables 4–5: the variance of the log importance weights, per figure and proposal.

With the sweep's run directories at hand, a first section sets every figure the MVAE paper
publishes beside it (:mod:`mvae_cli.paper.compare`): the difference in nats, a flag beyond the
tolerance, and whether the models come in the paper's order.

Written as Markdown (``report.md``), as one long CSV (``report.csv``: table, row, column,
mean, ci95, count) and the comparison as ``paper.csv`` (:func:`write_report`). The figures are drawn
by the caller from what :func:`write_report` returns (:func:`mvae_cli.figures.paper.plot_report`:
``paper.png``, and the paper's Fig. 4, 5 or 3 when the runs vary its axis): the figures sit above
this module.

Runs trained and evaluated one by one (``mvae train`` + ``mvae eval``, no sweep) are reported the
same way (:func:`runs_results`): each becomes a results row keyed by its model, its dataset (the
name the data file records) and its seed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from mvae_cli.atomic import read_json, write_text
from mvae_cli.engine.run import build_model, read_config, run_specs
from mvae_cli.errors import UserError
from mvae_cli.evaluate import proposal_label
from mvae_cli.evaluate.run_eval import EXAMPLES_FILE
from mvae_cli.model.model import parameter_counts as count_parameters
from mvae_cli.paper.compare import RunFacts, compare
from mvae_cli.paper.compare import markdown as paper_markdown
from mvae_cli.recipe import recipe_to_dict
from mvae_cli.sweep.revision import flatten_recipe
from mvae_cli.tables.results import build_row, csv_text, format_value
from mvae_cli.tables.stats import summarize

REPORT_MD, REPORT_CSV, PAPER_CSV = "report.md", "report.csv", "paper.csv"
MODEL_KEYS = ("model.name", "model")
DATASET_KEYS = ("data.dataset", "data.path")
LIKELIHOODS = (("log_px", "log p(x)"), ("log_pxy", "log p(x, y)"), ("log_px_given_y", "log p(x | y)"))
VARIANCES = (("var_log_w.marginal", "log p(x)"), ("var_log_w.joint", "log p(x, y)"),
             ("var_log_w.conditional", "log p(x | y)"))


def _row_key(grid_keys: list[str], rows: list[dict]) -> str | None:
    return next((k for k in MODEL_KEYS if k in grid_keys or any(k in r for r in rows)), None)


def _column_keys(grid_keys: list[str], model_key: str | None) -> list[str]:
    """The dataset key, then every other grid key but the model and the seed: only seeds share a cell."""
    datasets = [k for k in DATASET_KEYS if k in grid_keys]
    return datasets[:1] + [k for k in grid_keys if k not in ("seed", model_key, *DATASET_KEYS)]


def _label(row: dict, keys: list[str]) -> str:
    """A column's name: the dataset (a file's stem for ``data.path``), then ``key=value`` of the others."""
    if not keys:
        return "all runs"
    parts = []
    for key in keys:
        if key in DATASET_KEYS:
            parts.append(Path(str(row.get(key))).stem if key == "data.path" else str(row.get(key)))
        else:
            parts.append(f"{key}={format_value(row.get(key))}")
    if keys[0] in DATASET_KEYS and len(parts) > 1:
        return f"{parts[0]} ({','.join(parts[1:])})"
    return ",".join(parts)


def _ordered(values: list) -> list:
    return list(dict.fromkeys(values))


def _cell(stats, integer: bool = False) -> str:
    if stats.count == 0:
        return "–"
    if integer:  # a count: the same for every seed
        return f"{stats.mean:,.0f}"
    if stats.count == 1 or not math.isfinite(stats.ci95):
        return f"{stats.mean:.2f} (1 run)"
    return f"{stats.mean:.2f} ± {stats.ci95:.2f}"


def _table(title: str, column: str, rows: list[dict], row_key: str | None, col_keys: list[str],
           default_row: str, integer: bool = False) -> tuple[str, list[dict]] | None:
    """One Markdown table of ``column`` (rows × columns) and its long CSV rows; None when no run has it."""
    if not any(isinstance(r.get(column), (int, float)) for r in rows):
        return None
    row_names = _ordered([str(r.get(row_key, default_row)) if row_key else default_row for r in rows])
    col_names = _ordered([_label(r, col_keys) for r in rows])
    lines = [f"### {title}", "", "| model | " + " | ".join(col_names) + " |",
             "| --- |" + " ---: |" * len(col_names)]
    long = []
    for name in row_names:
        cells = []
        for col in col_names:
            members = [r for r in rows if (str(r.get(row_key, default_row)) if row_key else default_row) == name
                       and _label(r, col_keys) == col]
            stats = summarize(r.get(column) for r in members)
            cells.append(_cell(stats, integer))
            long.append({"table": title, "figure": column, "row": name, "column": col, "mean": stats.mean,
                         "ci95": stats.ci95, "count": stats.count})
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", long


def _proposals(rows: list[dict], prefix: str, suffix: str = "") -> list[str]:
    found = []
    for row in rows:
        for key in row:
            if key.startswith(prefix + ".") and key.endswith(suffix):
                found.append(key[len(prefix) + 1:len(key) - len(suffix)] if suffix else key[len(prefix) + 1:])
    return _ordered(found)


def parameter_counts(run_dir: Path) -> dict[str, int] | None:
    """``{"inference": n, "total": n}`` of a run: what its ``run.json`` recorded (``model.parameters``),
    else counted on the model its recipe builds; None when the run cannot be read."""
    info = read_json(run_dir / "run.json")
    if info is None:
        return None
    model = info.get("model")
    given = model.get("parameters") if isinstance(model, dict) else None
    given = info.get("parameters") if given is None else given  # older run.json files
    if isinstance(given, dict):
        return {k: int(v) for k, v in given.items() if isinstance(v, (int, float))}
    if isinstance(given, (int, float)):
        return {"total": int(given)}
    try:
        return count_parameters(build_model(read_config(run_dir), run_specs(info)))
    except Exception:  # a run another version wrote: leave its counts out rather than fail the report
        return None


def _dataset_name(run_dir: Path, recipe) -> str:
    """The dataset a run trained on: the name its data file records (run.json), else the recipe's, as
    ``binary-<name>`` when the run binarised its images dynamically (``data.binarize``): MNIST so
    binarised is the paper's BinaryMNIST, as the authors' code builds it."""
    info = read_json(Path(run_dir) / "run.json") or {}
    name = info.get("dataset", {}).get("name") if isinstance(info.get("dataset"), dict) else None
    name = name if isinstance(name, str) and name else recipe.data.dataset
    return f"binary-{name}" if recipe.data.binarize and not name.startswith("binary-") else name


# Recipe keys that say where and how a run ran, not what it computed: runs differing in them are pooled.
_HOW = ("seed", "data.path", "data.source", "data.dataset", "model.name", "checkpoint_every", "checkpoint_minutes",
        "device", "nproc", "trackers", "slurm", "grid", "eval")
_EVAL_HOW = ("particles", "prior_samples", "split", "checkpoint", "n_examples")  # eval.json's settings


def runs_results(run_dirs: list[Path]) -> tuple[list[str], list[dict]]:
    """``(grid keys, rows)`` of runs trained and evaluated one by one, as a sweep would have them.

    Each run's row is named by its directory and keyed by ``model.name``, ``data.dataset`` (the name
    its data file records, so a BinaryMNIST file trained with the MNIST recipe is BinaryMNIST, and MNIST
    binarised dynamically by ``data.binarize`` is too), every
    recipe key the runs do not all share (``epochs``, ``supervision``, ``model.weights.label``, …;
    where and how they ran — paths, device, checkpoints — left out), the eval settings they do not
    all share (``eval.particles``, ``eval.n_examples``, …) and ``seed``: only runs that differ in
    nothing but the seed share a cell.

    Raises:
        UserError: a path that is not a run directory, or a run not evaluated yet.
    """
    runs = []
    for run_dir in run_dirs:
        recipe = read_config(run_dir)
        evaluation = read_json(Path(run_dir) / "eval.json")
        if evaluation is None:
            raise UserError(f"{run_dir} has no eval.json yet: evaluate it first with `mvae eval {run_dir}`")
        flat = {k: v for k, v in flatten_recipe(recipe_to_dict(recipe)).items()  # no model.weights is not a key
                if v != {} and not any(k == how or k.startswith(how + ".") for how in _HOW)}
        if recipe.supervision is None and recipe.keep_prob is None:  # no mask drawn: every row paired
            flat["supervision"] = 1.0
        flat.update({f"eval.{k}": evaluation.get(k) for k in _EVAL_HOW})
        runs.append((run_dir, recipe, evaluation, flat))
    keys = list(dict.fromkeys(k for *_, flat in runs for k in flat))

    def differs(key: str) -> bool:
        return len({(key in flat, json.dumps(flat.get(key), sort_keys=True)) for *_, flat in runs}) > 1

    differing = sorted(filter(differs, keys), key=lambda k: k.startswith("eval."))  # the recipe's keys, then eval's
    rows = []
    for run_dir, recipe, evaluation, flat in runs:
        values = {"model.name": recipe.model.name, "data.dataset": _dataset_name(run_dir, recipe),
                  **{k: flat.get(k) for k in differing}}
        rows.append(build_row(str(run_dir), values, recipe.seed, evaluation,
                              read_json(Path(run_dir) / "run.json") or {}))
    return ["model.name", "data.dataset", *differing, "seed"], rows


def run_examples(run_dir: Path) -> dict | None:
    """A run's figures per test example (``eval_examples.npz``: ``{key: float64 array}``); None when it has
    none (evaluated by an earlier version) or it cannot be read."""
    try:
        with np.load(Path(run_dir) / EXAMPLES_FILE) as data:
            return {key: data[key] for key in data.files if key not in ("split", "n_examples")}
    except (OSError, ValueError, KeyError):
        return None


def run_facts(run_dir: Path, counts: dict[str, int] | None = None) -> RunFacts | None:
    """What the paper comparison needs of one run, from its config.yaml and eval.json; None when unreadable."""
    try:
        recipe = read_config(run_dir)
    except Exception:  # not a run directory, or one another version wrote
        return None
    evaluation = read_json(run_dir / "eval.json") or {}
    y = evaluation.get("y")
    return RunFacts(
        model=recipe.model.name, dataset=_dataset_name(run_dir, recipe), x=evaluation.get("x"),
        y=list(y) if isinstance(y, list) else ([y] if isinstance(y, str) else []),
        supervision=recipe.supervision, keep_prob=recipe.keep_prob, epochs=recipe.epochs,
        anneal_epochs=recipe.anneal_epochs, particles=evaluation.get("particles"),
        n_examples=evaluation.get("n_examples"),
        inference_parameters=(counts or {}).get("inference"))


def build_report(grid_keys: list[str], rows: list[dict], sweep_dir: Path | None = None,
                 model_name: str = "mvae", tolerance: float = 0.5, variance_factor: float = 2.0,
                 run_dirs: list[Path] | None = None) -> tuple[str, list[dict], list[dict]]:
    """The report's Markdown, its long CSV rows and the rows of its comparison with the paper.

    Args:
        grid_keys: the sweep's grid keys.
        rows: its results rows.
        sweep_dir: where ``runs/<point>/`` are, for Table 1 and the comparison with the paper (both
            left out when None and no ``run_dirs`` are given).
        model_name: the row name when the sweep does not vary the model.
        tolerance, variance_factor: the comparison's tolerances (:mod:`mvae_cli.paper.compare`).
        run_dirs: each row's run directory, when the rows are not a sweep's (:func:`runs_results`).
    """
    if run_dirs is None and sweep_dir is not None:
        run_dirs = [Path(sweep_dir) / "runs" / str(row.get("point")) for row in rows]
    row_key = _row_key(grid_keys, rows)
    col_keys = _column_keys(grid_keys, row_key)
    spread = "mean ± 95% CI (Student t) over seeds"
    sections = [f"# Report\n\n{len(rows)} runs; cells are the {spread}; columns: "
                f"{', '.join(col_keys) if col_keys else 'all runs'}.\n"]
    long: list[dict] = []

    facts: list[RunFacts | None] = []
    examples: list[dict | None] = []
    if run_dirs is not None:
        counted = []
        for row, run_dir in zip(rows, run_dirs):
            counts = parameter_counts(run_dir) or {}
            counted.append({**row, **{f"parameters.{k}": v for k, v in counts.items()}})
            facts.append(run_facts(run_dir, counts))
            examples.append(run_examples(run_dir))
        for kind in ("inference", "total"):
            table = _table(f"Table 1: parameters ({kind})", f"parameters.{kind}", counted, row_key, col_keys,
                           model_name, integer=True)
            if table:
                sections.append(table[0])
                long += table[1]

    for number, families in (("2–3", LIKELIHOODS), ("4–5", VARIANCES)):
        for prefix, figure in families:
            suffix = ".mean" if number == "2–3" else ""
            for proposal in _proposals(rows, prefix, suffix):
                what = f"{figure} [nats]" if number == "2–3" else f"Var[log w] of {figure} [nats²]"
                title = f"Tables {number}: {what} under {proposal_label(proposal)}"
                table = _table(title, f"{prefix}.{proposal}{suffix}", rows, row_key, col_keys, model_name)
                if table:
                    sections.append(table[0])
                    long += table[1]
    # a row per model and per value of every other key that varies (a variant, a setting, a dataset)
    varying = [k for k in grid_keys if k not in ("supervision", "seed")
               and (k in MODEL_KEYS or len({format_value(r.get(k)) for r in rows}) > 1)]
    supervision = supervision_section(rows, varying, model_name)
    if supervision:
        sections.append(supervision[0])
        long += supervision[1]
    split_by = [k for k in col_keys if k not in DATASET_KEYS]
    compared = compare(rows, facts, tolerance, variance_factor, split_by=split_by, examples=examples) if facts else []
    if facts:
        sections.insert(1, paper_markdown(compared, facts, tolerance, variance_factor))
    return "\n".join(sections), long, [c.as_row() for c in compared]


def supervision_section(rows: list[dict], row_keys: list[str], model_name: str,
                        reference: float = 0.01) -> tuple[str, list[dict]] | None:
    """Fig. 4 in numbers, for a sweep over ``supervision`` with accuracy: per row (the values of
    ``row_keys``, the grid keys but the level and the seed: a model, a variant; else ``model_name``) and level the mean
    accuracy, its distance to the fully paired one, the paired-only classifier, the fair baselines
    (:mod:`~mvae_cli.evaluate.fair`) and chance; and one line per model on ``reference`` (1% paired: the
    paper's "1% is sufficient on MNIST"). None otherwise."""
    levels = sorted({float(r["supervision"]) for r in rows if isinstance(r.get("supervision"), (int, float))})
    if len(levels) < 2 or not any(isinstance(r.get("accuracy.mean"), (int, float)) for r in rows):
        return None
    title = "Fig. 4: accuracy against supervision"
    fair = any(isinstance(r.get("vae_probe.mean"), (int, float)) or isinstance(r.get("paired_probe.mean"), (int, float))
               for r in rows)
    lines = [f"### {title}", "", "mean over seeds of the mean accuracy over the predicted modalities (± its 95% "
             "interval over seeds, Student t); Δ full = accuracy − the fully paired accuracy"
             + ("; probe of its code: a linear probe on the model's q(z|x) fitted on the paired rows alone; probe of "
                "image VAE: the same probe on an image-only VAE of every x" if fair else "") + ".", "",
             f"| {' / '.join('model' if k in MODEL_KEYS else k for k in row_keys) or 'model'} | supervision | accuracy | Δ full | paired-only classifier |"
             + (" probe of its code | probe of image VAE |" if fair else "") + " chance |",
             "| --- | ---: | ---: | ---: | ---: |" + (" ---: | ---: |" if fair else "") + " ---: |"]
    long, verdicts = [], []

    def row_name(row: dict) -> str:
        return " / ".join(format_value(row.get(k)) for k in row_keys) if row_keys else model_name

    for name in _ordered([row_name(r) for r in rows]):
        mine = [r for r in rows if row_name(r) == name]

        def mean_at(level, key, mine=mine):
            return summarize(r.get(key) for r in mine if float(r.get("supervision", -1)) == level)

        full = mean_at(1.0, "accuracy.mean") if 1.0 in levels else None
        for level in levels:
            acc, base, chance = (mean_at(level, k) for k in ("accuracy.mean", "baseline.mean", "chance.mean"))
            probe, vae = mean_at(level, "paired_probe.mean"), mean_at(level, "vae_probe.mean")
            if acc.count == 0:
                continue
            gap = acc.mean - full.mean if full is not None and full.count else math.nan
            lines.append(f"| {name} | {level:g} | {_with_interval(acc)} | {_signed(gap)} | {_plain(base)} |"
                         + (f" {_plain(probe)} | {_plain(vae)} |" if fair else "") + f" {_plain(chance)} |")
            for figure, stats in (("accuracy.mean", acc), ("baseline.mean", base), ("paired_probe.mean", probe),
                                  ("vae_probe.mean", vae)):
                if stats.count:
                    long.append({"table": title, "figure": figure, "row": name, "column": f"supervision={level:g}",
                                 "mean": stats.mean, "ci95": stats.ci95, "count": stats.count})
            if level == reference and (math.isfinite(gap) or base.count):
                said = [f"at {reference:g} paired, accuracy {_with_interval(acc)}"]
                if math.isfinite(gap):
                    said.append(f"{abs(gap):.3f} {'below' if gap < 0 else 'above'} the fully paired {full.mean:.3f} "
                                f"({'within' if abs(gap) <= 0.02 else 'outside'} the paper's 0.02 on MNIST)")
                if base.count:
                    said.append(f"{'above' if acc.mean > base.mean else 'not above'} the paired-only classifier's "
                                f"{base.mean:.3f}")
                if probe.count and vae.count:
                    said.append(f"its code read by a probe fitted on the pairs {probe.mean:.3f}, "
                                f"{'above' if probe.mean > vae.mean else 'not above'} the image-only VAE's {vae.mean:.3f}")
                verdicts.append(f"- {name}: " + "; ".join(said) + ".")
    best = best_remedy(rows, "variant", reference) if "variant" in row_keys else None
    if best:
        verdicts.append(f"- {best}")
    return "\n".join(lines + ([""] + verdicts if verdicts else [])) + "\n", long


def best_remedy(rows: list[dict], key: str, level: float) -> str | None:
    """The variant (a remedy) of the highest mean accuracy at ``level`` paired, said against the
    paired-only classifier there: whether it beats it and by how much, the margin as the mean of each
    seed's difference to the classifier of its own pairs with its 95% interval (and whether that
    interval holds 0); None without accuracy at that level."""
    at = [r for r in rows if isinstance(r.get("supervision"), (int, float)) and float(r["supervision"]) == level]
    names = _ordered([str(r.get(key)) for r in at if isinstance(r.get("accuracy.mean"), (int, float))])
    if not names:
        return None
    stats = {name: summarize(r.get("accuracy.mean") for r in at if str(r.get(key)) == name) for name in names}
    name = max(names, key=lambda n: stats[n].mean)
    base = summarize(r.get("baseline.mean") for r in at if str(r.get(key)) == name)
    text = f"best at {level:g} paired: {key} {name}, accuracy {_with_interval(stats[name])}"
    if not base.count:
        return text + "."
    # each run against the classifier of its own pairs (same mask): the seeds' differences
    margin = summarize(r["accuracy.mean"] - r["baseline.mean"] for r in at if str(r.get(key)) == name
                       and isinstance(r.get("baseline.mean"), (int, float)))
    verdict = ("beats" if margin.mean > 0 else "is below") + f" the paired-only classifier's {_with_interval(base)}"
    if margin.count > 1 and math.isfinite(margin.ci95):
        by = f"by {abs(margin.mean):.3f} ± {margin.ci95:.3f} (each seed against the classifier of its own pairs)"
        if abs(margin.mean) <= margin.ci95:
            by += ", a difference the seeds do not tell from none"
    else:
        by = f"by {abs(margin.mean):.3f}"
    return f"{text}: it {verdict} {by}."


def _with_interval(stats) -> str:
    """``0.626 ± 0.012`` (the 95% interval over seeds), ``0.626`` for one seed, ``–`` for none."""
    if not stats.count:
        return "–"
    return f"{stats.mean:.3f} ± {stats.ci95:.3f}" if stats.count > 1 and math.isfinite(stats.ci95) else f"{stats.mean:.3f}"


def _signed(value: float) -> str:
    return f"{value:+.3f}" if math.isfinite(value) else "–"


def _plain(stats) -> str:
    return f"{stats.mean:.3f}" if stats.count else "–"


def write_report(sweep_dir: str | Path, grid_keys: list[str], rows: list[dict], tolerance: float = 0.5,
                 variance_factor: float = 2.0, run_dirs: list[Path] | None = None,
                 out: str | Path | None = None) -> tuple[list[Path], str, list[dict]]:
    """Write ``report.md``, ``report.csv`` and ``paper.csv`` (ours beside the paper's) into ``out``
    (default ``sweep_dir``).

    The figures are the caller's to draw from the returned comparison rows
    (:func:`mvae_cli.figures.paper.plot_report`), as ``mvae report`` does.

    Args:
        sweep_dir: the sweep directory (its ``runs/<point>/``), or None for runs reported one by one.
        grid_keys, rows: the sweep's grid keys and results rows (:func:`runs_results` for single runs).
        tolerance, variance_factor: the comparison's tolerances (:mod:`mvae_cli.paper.compare`).
        run_dirs: the rows' run directories when they are not ``sweep_dir``'s (``sweep_dir`` None).
        out: the folder written into.

    Returns:
        ``(paths written, the Markdown, the comparison rows)``: the rows are ``paper.csv``'s.
    """
    markdown, long, compared = build_report(grid_keys, rows, None if sweep_dir is None else Path(sweep_dir),
                                            tolerance=tolerance, variance_factor=variance_factor, run_dirs=run_dirs)
    out = Path(sweep_dir if out is None else out)
    out.mkdir(parents=True, exist_ok=True)
    md, table, paper = out / REPORT_MD, out / REPORT_CSV, out / PAPER_CSV
    write_text(md, markdown)
    write_text(table, csv_text(["table", "figure", "row", "column", "mean", "ci95", "count"], long))
    write_text(paper, csv_text(["table", "figure", "model", "dataset", "setting", "ours", "ci95", "count", "paper",
                                "difference", "beyond_tolerance", "median", "largest_share"], compared))
    return [md, table, paper], markdown, compared
