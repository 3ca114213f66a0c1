"""Our figures beside a paper's published ones: the difference, a tolerance flag, the order of models.

The MVAE paper's tables (``wu_goodman_2018.json``) are fully paired runs, so only runs trained
fully paired (supervision 1, no keep-probability) are compared. A figure is placed in the
paper's table by its proposal: q(z | x) → Tables 2 and 4, q(z | x, y) → Tables 3 and 5, where x
and y are the run's eval ``x`` and ``y`` (the CVAE's one network, q(z | x, y), is in Tables 2 and 4). Tolerances:

- log-likelihoods (Tables 2–3): ``|ours − paper|`` above ``tolerance`` nats (default 0.5);
- variances of the log weights (Tables 4–5): ours more than ``variance_factor`` (default 2)
  times above or below the paper's;
- inference-network parameters (Table 1): any difference.

The order of models on each column (higher log-likelihood, lower variance, fewer parameters
first) is compared with the paper's where at least two models have both.

Where the runs saved their figures per test example (``eval_examples.npz``), each ordering also
gives the gap between neighbouring models with its 95% interval, paired over the test examples
(both models scored the same ones), and an ordering that differs from the paper's only by swaps
inside those intervals says so: one seed's test-set noise cannot order them (training noise, seed
to seed, is not in that interval).

A variance of the log weights is a mean over test examples, and one example whose proposal misses
its posterior can carry most of it. Where the per-example figures show that (the largest 0.1% of the
examples, at least one, hold half the sum or more), the report gives the median and the mean without
them beside it (:func:`tail_of`).

Runs that differ in a setting other than the seed (``split_by``: a sweep's other grid keys, e.g. two
label weights, both fully paired) are compared separately, each cell naming its setting; only seeds
are pooled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from mvae_cli.paper import paper_tables
from mvae_cli.tables.results import format_value
from mvae_cli.tables.stats import summarize

LIKELIHOOD_FIGURES = ("log_px", "log_pxy", "log_px_given_y")
VARIANCE_FIGURES = {"marginal": "var_px", "joint": "var_pxy", "conditional": "var_px_given_y"}
FIGURE_LABELS = {"log_px": "log p(x)", "log_pxy": "log p(x, y)", "log_px_given_y": "log p(x | y)",
                 "var_px": "Var[log w], log p(x)", "var_pxy": "Var[log w], log p(x, y)",
                 "var_px_given_y": "Var[log w], log p(x | y)", "inference_parameters": "inference parameters"}
TAIL_FRACTION, TAIL_SHARE = 0.001, 0.5  # the largest 0.1% of examples holding half the sum: heavy-tailed
Z95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval
TABLE_OF = {("likelihood", "x"): "2", ("likelihood", "x,y"): "3", ("variance", "x"): "4", ("variance", "x,y"): "5"}


@dataclass
class RunFacts:
    """What the comparison needs to know of one run besides its results row."""

    model: str
    dataset: str
    x: str | None = None
    y: list[str] = field(default_factory=list)
    supervision: float | None = None
    keep_prob: float | None = None
    epochs: int | None = None
    anneal_epochs: float | None = None
    particles: int | None = None
    n_examples: int | None = None
    inference_parameters: int | None = None


@dataclass
class Compared:
    table: str
    figure: str
    model: str
    dataset: str
    ours: float
    ci95: float
    count: int
    paper: float
    difference: float
    beyond: bool
    setting: str = ""  # the other grid values of the pooled runs ("" when none varies)
    examples: np.ndarray | None = field(default=None, repr=False, compare=False)  # per test example, seeds averaged

    @property
    def column(self) -> str:
        return f"{self.dataset} ({self.setting})" if self.setting else self.dataset

    @classmethod
    def from_row(cls, row: dict) -> Compared:
        """The inverse of :meth:`as_row` (per-example figures are not in a row)."""
        return cls(str(row["table"]), row["figure"], row["model"], row["dataset"], float(row["ours"]),
                   float(row["ci95"]), int(row["count"]), float(row["paper"]), float(row["difference"]),
                   bool(row["beyond_tolerance"]), row.get("setting") or "")

    def as_row(self) -> dict:
        tail = tail_of(self)
        return {"table": self.table, "figure": self.figure, "model": self.model, "dataset": self.dataset,
                "setting": self.setting, "ours": self.ours, "ci95": self.ci95, "count": self.count, "paper": self.paper,
                "difference": self.difference, "beyond_tolerance": self.beyond,
                "median": tail.median if tail else None, "largest_share": tail.largest_share if tail else None}


@dataclass
class Tail:
    """How a variance cell's mean over test examples is spread: its median, and the share of the sum held by
    its ``largest`` examples (the top 0.1%, at least one), with the mean of the others."""

    median: float
    largest: int
    largest_share: float
    mean_without: float
    n: int

    @property
    def heavy(self) -> bool:
        return self.largest_share >= TAIL_SHARE


def tail_of(cell: Compared) -> Tail | None:
    """The :class:`Tail` of a variance cell (Tables 4–5) from its per-example figures; None without them."""
    values = cell.examples
    if cell.table not in ("4", "5") or values is None or values.size < 2:
        return None
    values = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    largest = max(1, int(math.ceil(TAIL_FRACTION * values.size)))
    total = float(values.sum())
    share = float(values[:largest].sum()) / total if total > 0 else 0.0
    return Tail(float(np.median(values)), largest, share, float(values[largest:].mean()), int(values.size))


def paper_keys(model: str, dataset: str) -> tuple[str, str]:
    """The paper's (model, column) of one of our (model, dataset): MVAE19 is our mvae on celeba19."""
    if dataset == "celeba19":
        return ("mvae19" if model == "mvae" else f"{model}19"), "celeba"
    return model, dataset


def _role(proposal: str, facts: RunFacts) -> str | None:
    if facts.x is None:
        return None
    given = set(proposal.split("+"))
    if given == {facts.x}:
        return "x"
    if facts.y and given == {facts.x, *facts.y}:
        return "x,y"
    return None


def _figures_of(row: dict, facts: RunFacts):
    """``(table, figure, value, key)`` of every figure of a results row that one of the paper's tables holds;
    ``key`` names the figure in ``eval_examples.npz`` (None for the parameter count)."""
    if facts.inference_parameters is not None:
        yield "1", "inference_parameters", float(facts.inference_parameters), None
    for key, value in row.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        parts = key.split(".")
        if parts[0] in LIKELIHOOD_FIGURES and len(parts) == 3 and parts[2] == "mean":
            role, kind, figure, example_key = _role(parts[1], facts), "likelihood", parts[0], ".".join(parts[:2])
        elif parts[0] == "var_log_w" and len(parts) == 3 and parts[1] in VARIANCE_FIGURES:
            role, kind, figure, example_key = _role(parts[2], facts), "variance", VARIANCE_FIGURES[parts[1]], key
        else:
            continue
        if role == "x,y" and facts.model == "cvae":
            role = "x"  # q(z | x, y) is the CVAE's only inference network: the paper lists it in Tables 2 and 4
        if role is not None:
            yield TABLE_OF[(kind, role)], figure, float(value), example_key


def _beyond(table: str, ours: float, paper: float, tolerance: float, variance_factor: float) -> bool:
    if table == "1":
        return round(ours) != round(paper)
    if table in ("4", "5"):
        return not (paper / variance_factor <= ours <= paper * variance_factor)
    return abs(ours - paper) > tolerance


def compare(rows: list[dict], facts: list[RunFacts | None], tolerance: float = 0.5, variance_factor: float = 2.0,
            paper: str = "wu-goodman-2018", split_by: Sequence[str] = (),
            examples: Sequence[dict | None] | None = None) -> list[Compared]:
    """Every (table, figure, model, dataset) that our fully paired runs and the paper both have.

    Args:
        rows: results rows (``results.json``).
        facts: the :class:`RunFacts` of each row (None where its run cannot be read).
        tolerance: nats allowed between our log-likelihood and the paper's.
        variance_factor: the factor allowed between our variance of the log weights and the paper's.
        split_by: the row keys (besides model, dataset and seed) whose values keep runs apart.
        examples: each row's figures per test example (``eval_examples.npz`` as ``{key: array}``), or None.
    """

    tables = paper_tables(paper)["tables"]
    groups: dict[tuple[str, str, str, str, str], list[float]] = {}
    per_example: dict[tuple[str, str, str, str, str], list] = {}
    for row, fact, found_examples in zip(rows, facts, examples or [None] * len(rows)):
        if fact is None or fact.keep_prob is not None or (fact.supervision is not None and fact.supervision < 1.0):
            continue
        model, dataset = paper_keys(fact.model, fact.dataset)
        setting = ",".join(f"{key}={format_value(row.get(key))}" for key in split_by)
        for table, figure, value, example_key in _figures_of(row, fact):
            groups.setdefault((table, figure, model, dataset, setting), []).append(value)
            per_example.setdefault((table, figure, model, dataset, setting), []).append(
                (found_examples or {}).get(example_key) if example_key else None)
    found = []
    for (table, figure, model, dataset, setting), values in groups.items():
        published = tables.get(table, {}).get("figures", {}).get(figure, {}).get(model, {}).get(dataset)
        if published is None:
            continue
        stats = summarize(values)
        if stats.count == 0:
            continue
        arrays = per_example[(table, figure, model, dataset, setting)]
        pooled = None  # every seed's values on the same examples, averaged per example
        if all(a is not None for a in arrays) and len({a.shape for a in arrays}) == 1:
            pooled = np.mean(np.stack(arrays), axis=0)
        found.append(Compared(table, figure, model, dataset, stats.mean, stats.ci95, stats.count, float(published),
                              stats.mean - published, _beyond(table, stats.mean, published, tolerance, variance_factor),
                              setting, pooled))
    order = {t: i for i, t in enumerate("12345")}
    figures = {f: i for i, f in enumerate(FIGURE_LABELS)}
    found.sort(key=lambda c: (order[c.table], figures[c.figure], c.dataset, c.setting, c.model))
    return found


def orderings(compared: list[Compared]) -> list[tuple[str, str, str, list[str], list[str]]]:
    """Per (table, figure, dataset) with two models or more: ``(table, figure, dataset, ours, paper)``,
    the models best first (highest log-likelihood; lowest variance or parameter count)."""
    columns: dict[tuple[str, str, str], list[Compared]] = {}
    for c in compared:
        columns.setdefault((c.table, c.figure, c.column), []).append(c)
    out = []
    for (table, figure, dataset), cells in columns.items():
        if len(cells) < 2:
            continue
        sign = -1.0 if table in ("2", "3") else 1.0
        ours = [c.model for c in sorted(cells, key=lambda c: sign * c.ours)]
        theirs = [c.model for c in sorted(cells, key=lambda c: sign * c.paper)]
        out.append((table, figure, dataset, ours, theirs))
    return out


@dataclass
class Gap:
    """How far ``ahead`` is from ``behind`` on one figure, in the direction that is better (positive:
    ``ahead`` better), with the half-width of its 95% interval paired over the test examples."""

    ahead: str
    behind: str
    difference: float
    half_width: float

    @property
    def resolved(self) -> bool:
        return abs(self.difference) > self.half_width


def paired_gap(ahead: Compared, behind: Compared) -> Gap | None:
    """The gap between two cells of one column from their per-example figures; None without them."""
    a, b = ahead.examples, behind.examples
    if a is None or b is None or a.shape != b.shape or a.size < 2:
        return None
    better = 1.0 if ahead.table in ("2", "3") else -1.0  # likelihoods: higher; variances: lower
    d = better * (a - b)
    return Gap(ahead.model, behind.model, float(d.mean()), Z95 * float(d.std(ddof=1)) / math.sqrt(d.size))


def _ordering_line(table: str, figure: str, column: str, ours: list[str], theirs: list[str],
                   cells: dict[str, Compared]) -> str:
    gaps = [paired_gap(cells[a], cells[b]) for a, b in zip(ours, ours[1:])]
    if all(g is not None for g in gaps):
        ranked = ours[0] + "".join(f" > {g.behind} ({g.difference:+.2f} ± {g.half_width:.2f})" for g in gaps)
    else:
        ranked = " > ".join(ours)
    if ours == theirs:
        verdict = "same order"
    else:
        swapped = [paired_gap(cells[a], cells[b]) for i, a in enumerate(ours) for b in ours[i + 1:]
                   if theirs.index(b) < theirs.index(a)]
        if swapped and all(g is not None and not g.resolved for g in swapped):
            verdict = ("differs only within noise: every swapped pair is closer than its 95% interval "
                       "over the test examples")
        else:
            verdict = "**differs**"
    return (f"- Table {table}, {FIGURE_LABELS[figure]}, {column}: ours {ranked}; "
            f"paper {' > '.join(theirs)} — {verdict}")


def _number(table: str, value: float) -> str:
    if table == "1":
        return f"{value:,.0f}"
    return f"{value:.2f}"


def markdown(compared: list[Compared], facts: list[RunFacts | None], tolerance: float = 0.5,
             variance_factor: float = 2.0, paper: str = "wu-goodman-2018") -> str:
    """The "beside the paper" section of a report: a table, the model orderings, the runs' schedule."""
    data = paper_tables(paper)
    lines = [f"## Beside the paper\n\n{data['citation']}\n",
             f"Δ = ours − paper. ⚠ marks a log-likelihood more than {tolerance:g} nat from the paper's, a variance "
             f"of the log weights more than {variance_factor:g}× off, or a parameter count that differs. Only fully "
             "paired runs are compared (the paper's tables are).\n"]
    if not compared:
        lines.append("No figure of these runs is in the paper's tables (its models on its datasets, fully paired).\n")
        return "\n".join(lines)
    lines.append(_schedule(facts, data))
    beyond = sum(c.beyond for c in compared)
    lines.append(f"{len(compared) - beyond} of {len(compared)} figures within tolerance"
                 + (f"; {beyond} beyond (⚠)." if beyond else ".") + "\n")
    lines += ["| table | figure | model | dataset | ours | paper | Δ | |", "| --- | --- | --- | --- | ---: | ---: | ---: | --- |"]
    for c in compared:
        ours = _number(c.table, c.ours)
        if c.count > 1 and math.isfinite(c.ci95):
            ours += f" ± {c.ci95:.2f}"
        diff = f"{c.difference:+,.0f}" if c.table == "1" else f"{c.difference:+.2f}"
        label = FIGURE_LABELS[c.figure].replace("|", "\\|")  # a bar inside a cell would end it
        lines.append(f"| {c.table} | {label} | {c.model} | {c.column} | {ours} | "
                     f"{_number(c.table, c.paper)} | {diff} | {'⚠' if c.beyond else ''} |")
    ranked = orderings(compared)
    if ranked:
        paired = any(c.examples is not None for c in compared)
        lines += ["", "Order of models per column (best first)"
                  + ("; in brackets, each model's gap to the one before it with its 95% interval, paired over the "
                     "test examples (test-set noise only: seed-to-seed training noise is not in it):" if paired
                     else ":"), ""]
        for table, figure, column, ours, theirs in ranked:
            cells = {c.model: c for c in compared if (c.table, c.figure, c.column) == (table, figure, column)}
            lines.append(_ordering_line(table, figure, column, ours, theirs, cells))
    heavy = [(c, t) for c in compared if (t := tail_of(c)) is not None and t.heavy]
    if heavy:
        lines += ["", f"Variances resting on a few test examples (the largest {TAIL_FRACTION:.1%} hold half the sum "
                  "or more; the mean is what the paper reports, the median what a typical example sees):", ""]
        for c, t in heavy:
            lines.append(f"- Table {c.table}, {FIGURE_LABELS[c.figure]}, {c.model}, {c.column}: mean {c.ours:.2f}, "
                         f"median {t.median:.2f}; the {t.largest:,} largest of {t.n:,} examples hold "
                         f"{t.largest_share:.0%} of the sum, and the mean of the others is {t.mean_without:.2f}")
    return "\n".join(lines) + "\n"


def _schedule(facts: list[RunFacts | None], data: dict) -> str:
    """One line on how the compared runs were trained and scored against the paper's setting."""
    known = [f for f in facts if f is not None]
    epochs = sorted({f.epochs for f in known if f.epochs is not None})
    anneal = sorted({f.anneal_epochs for f in known if f.anneal_epochs is not None})
    particles = sorted({f.particles for f in known if f.particles is not None})
    examples = sorted({f.n_examples for f in known if f.n_examples is not None})
    ours = (f"These runs: {', '.join(map(str, epochs)) or '?'} epochs, β annealed over "
            f"{', '.join(f'{a:g}' for a in anneal) or '?'}, {', '.join(map(str, particles)) or '?'} particles on "
            f"{', '.join(f'{n:,}' for n in examples) or '?'} test examples.")
    setting = data.get("settings", {}).get("mnist")
    if not setting:
        return ours + "\n"
    theirs = (f" The paper (MNIST family): {setting['epochs']} epochs, β over {setting['anneal_epochs']}, "
              f"{setting['particles']:,} particles on {setting['test_examples']:,} test images.")
    short = any(e < setting["epochs"] for e in epochs)
    caution = (" A shorter schedule than the paper's gives lower likelihoods: read Δ against the expected values of "
               "that schedule (docs/reproduction.md), not against zero.") if short else ""
    return ours + theirs + caution + "\n"
