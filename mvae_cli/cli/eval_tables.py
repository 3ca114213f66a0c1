"""The tables ``mvae eval`` prints from an ``eval.json`` mapping, each within 80 columns.

Proposals are named by their role, q(z|x), q(z|x,y) and q(z|y), with x and y spelled out once
above the tables; every figure with a standard error is rounded to it; chance, exact on the test
set, has no ±; an importance-sampled figure that cannot be trusted
(:mod:`~mvae_cli.evaluate.reliability`) carries a † and the rule under the table.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from mvae_cli.cli.tables import add_row, label_column, new_table, number_column, titled
from mvae_cli.evaluate.reliability import rule, unreliable
from mvae_cli.tables.rounding import binomial_se, estimate, exact

FIGURES = (("log_px", "marginal", "log p(x)"), ("log_pxy", "joint", "log p(x,y)"),
           ("log_px_given_y", "conditional", "log p(x|y)"))
DAGGER = "† "  # before the number, so that the numbers stay aligned on their last digit


def proposal_heading(proposal: str, x: str, y: list[str]) -> str:
    """``image`` → ``q(z|x)``, ``image+label`` → ``q(z|x,y)``, ``label`` → ``q(z|y)``; any other subset
    by its names."""
    given = set(proposal.split("+"))
    if given == {x}:
        return "q(z|x)"
    if given == {x, *y}:
        return "q(z|x,y)"
    if given == set(y):
        return "q(z|y)"
    return f"q(z|{','.join(proposal.split('+'))})"


def header(result: dict) -> Text:
    """What was evaluated, and what x and y stand for."""
    text = Text()
    text.append(f"{result['split']} split · {result['n_examples']:,} examples · K = {result['particles']:,} "
                f"particles · {result['prior_samples']:,} prior samples · {result['checkpoint']} checkpoint · "
                f"{result['seconds']:.1f} s\n")
    text.append(f"x = {result['x']} · y = {', '.join(result['y'])}")
    return text


def likelihood_table(result: dict) -> RenderableType:
    """log p(x), log p(x,y), log p(x|y) per proposal (mean ± standard error over the examples), their
    effective sample sizes and log-weight variances."""
    proposals = list(result["log_px"])
    rows: list[list[str]] = []
    flagged = False
    for key, target, label in FIGURES:
        cells = []
        for name in proposals:
            figure = result[key].get(name)
            if figure is None:
                cells.append("not defined")
                continue
            bad = unreliable(figure.get("ess"), (result["var_log_w"].get(target) or {}).get(name))
            flagged = flagged or bad
            cells.append((DAGGER if bad else "") + estimate(figure["mean"], figure.get("se")))
        rows.append([label, *cells])
    for key, _, label in FIGURES:
        rows.append([f"ESS, {label[4:]}", *("–" if result[key].get(n) is None else f"{result[key][n]['ess']:,.1f}"
                                           for n in proposals)])
    for _, target, label in FIGURES:
        values = result["var_log_w"].get(target) or {}
        rows.append([f"Var[log w], {label[4:]}", *("–" if values.get(n) is None else _variance(values[n])
                                                  for n in proposals)])
    table = new_table()
    label_column(table, "figure")
    for i, name in enumerate(proposals):
        number_column(table, proposal_heading(name, result["x"], result["y"]), [r[i + 1] for r in rows])
    for row in rows:
        add_row(table, row)
    notes = [f"ESS: effective sample size of the K = {result['particles']:,} particles (mean over examples)"]
    if flagged:
        notes.append(f"† unreliable: {rule()}; the proposal is far from the posterior")
    return titled("log-likelihoods [nats], mean ± standard error over the examples", table, notes)


def _variance(value: float) -> str:
    """Three significant digits, trailing zeros kept (``37.0`` beside ``88.5``); thousands whole."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:#.3g}".rstrip(".")


def accuracy_table(result: dict) -> RenderableType | None:
    """The accuracy of each y predicted from x beside the classifier trained on the paired rows
    only and chance (where ``eval.json`` has them); None without a predicted modality."""
    accuracy = result.get("accuracy")
    if not accuracy:
        return None
    n = result["n_examples"]
    baseline, chance = result.get("baseline") or {}, result.get("chance") or {}
    names = [k for k in accuracy if k != "mean"] + (["mean"] if "mean" in accuracy else [])

    def with_error(values: dict, name: str) -> str:
        if name not in values:
            return "–"
        # the mean over modalities too: √(p̄(1 − p̄)/n) bounds its error, whatever their correlation
        return estimate(values[name], binomial_se(values[name], n))

    rows = []
    for name in names:
        row = [name, with_error(accuracy, name)]
        if baseline or chance:
            row += [with_error(baseline, name), exact(chance[name]) if name in chance else "–"]
        rows.append(row)
    table = new_table()
    label_column(table, "y")
    headers = ["model"] + (["paired rows only", "chance"] if baseline or chance else [])
    for i, heading in enumerate(headers):
        number_column(table, heading, [r[i + 1] for r in rows])
    for row in rows:
        add_row(table, row)
    notes = ["paired rows only: a classifier trained on the run's paired rows alone; chance: always the most "
             "frequent class (exact on these examples)"] if baseline or chance else []
    return titled(f"accuracy of y predicted from {result['x']} alone, ± standard error over {n:,} examples",
                  table, notes)


def fair_table(result: dict) -> RenderableType | None:
    """The model's accuracy beside the fair baselines (:mod:`~mvae_cli.evaluate.fair`), per y they
    cover; None where ``eval.json`` has neither."""
    probes = {key: result.get(key) or {} for key in ("paired_probe", "vae_probe")}
    names = list(dict.fromkeys(name for values in probes.values() for name in values))
    if not names:
        return None
    n, accuracy = result["n_examples"], result.get("accuracy") or {}

    def with_error(values: dict, name: str) -> str:
        return estimate(values[name], binomial_se(values[name], n)) if name in values else "–"

    rows = [[name, with_error(accuracy, name), *(with_error(probes[k], name) for k in probes)] for name in names]
    table = new_table()
    label_column(table, "y")
    for i, heading in enumerate(["model", "probe of its code", "probe of image VAE"]):
        number_column(table, heading, [r[i + 1] for r in rows])
    for row in rows:
        add_row(table, row)
    x = result["x"]
    notes = [f"probe of its code: a linear probe on the model's q(z|{x}) fitted on the run's paired rows alone; "
             f"probe of image VAE: the same probe on a VAE of every {x} with the run's networks and schedule"]
    return titled("the fair baselines: did the unpaired data give a better code?", table, notes)


def class_table(result: dict, class_name: str | None) -> RenderableType | None:
    """Coherence and the latent linear probe of the class: a row per subset size (means over the
    subsets of that size), the probe from q(z | x) and its best subset; None when neither exists."""
    coherence, probe = result.get("coherence"), result.get("probe") or {}
    if not coherence and not probe:
        return None
    n = result["n_examples"]
    rows = []
    if coherence:
        for size, value in coherence["cross_by_size"].items():
            rows.append([f"coherence, {size} modalit{'y' if size == '1' else 'ies'} given",
                         estimate(value, binomial_se(value, n))])
        if coherence.get("joint") is not None:
            draws = min(result["prior_samples"], 1000)
            rows.append(["coherence, joint (z ~ p(z))", estimate(coherence["joint"], binomial_se(coherence["joint"], draws))])
    if probe:
        x = result["x"]
        if x in probe:
            rows.append([f"probe from q(z | {x})", estimate(probe[x], binomial_se(probe[x], n))])
        by_size: dict[int, list[float]] = {}
        for subset, value in probe.items():
            by_size.setdefault(subset.count("+") + 1, []).append(value)
        for size, values in sorted(by_size.items()):
            mean = sum(values) / len(values)
            rows.append([f"probe, {size} given (mean of {len(values)})", estimate(mean, binomial_se(mean, n))])
        best = max(probe, key=probe.get)
        rows.append([f"probe, best: q(z | {best.replace('+', ', ')})", estimate(probe[best], binomial_se(probe[best], n))])
    chance = (result.get("chance") or {}).get(class_name) if class_name else None
    if chance is not None:
        rows.append([f"chance (most frequent {class_name})", exact(chance)])
    table = new_table()
    label_column(table, "figure")
    number_column(table, "share", [r[1] for r in rows])
    for row in rows:
        add_row(table, row)
    what = f"the class {class_name}" if class_name else "the class"
    notes = ["coherence: generated modalities classified as the right class; probe: a linear classifier on the "
             "mean of q(z | S)"]
    ceiling = (coherence or {}).get("classifier_accuracy") or {}
    if ceiling:
        notes.append("ceiling, the coherence classifiers on real data: "
                     + ", ".join(f"{k} {exact(v)}" for k, v in ceiling.items()))
    return titled(f"coherence and latent probe of {what}, ± standard error over {n:,} examples", table, notes)


def eval_report(result: dict, class_name: str | None) -> Group:
    """Everything ``mvae eval`` prints on stdout, in order."""
    parts: list[RenderableType] = [header(result), Text(""), likelihood_table(result)]
    for part in (accuracy_table(result), fair_table(result), class_table(result, class_name)):
        if part is not None:
            parts.append(part)
    return Group(*parts)
