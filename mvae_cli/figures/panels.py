"""The panels of the study figures, built from a sweep's results columns (``accuracy.shape``,
``log_px.image.mean``, ``probe.image+colour``, ...), styled by :mod:`mvae_cli.figures.style`.

Each builder returns None (or no panel) when the results lack its figures, so a study of a model
without a class modality or without q(z | y) draws what it has.
"""

from __future__ import annotations

import math

from mvae_cli.evaluate import proposal_label
from mvae_cli.figures.style import MEAN, MODEL, Panel, Series, colour, ramp, reference

MAX_ACCURACY_PANELS = 9  # more predicted modalities (CelebA19's 18) share one panel
ACCURACY_LABEL = "test accuracy (fraction correct)"
FAMILIES = {"log_px": ("marginal", "log p(x)"), "log_pxy": ("joint", "log p(x, y)"),
            "log_px_given_y": ("conditional", "log p(x | y)")}
PROBE_BY_SIZE = "probe_by_size."  # derived columns: the mean probe over the subsets of each size


def predicted(columns: list[str]) -> list[str]:
    """The modalities y predicted from x (``accuracy.<y>``), without their mean and CelebA's per-attribute keys."""
    return [c[len("accuracy."):] for c in columns if c.startswith("accuracy.") and "/" not in c
            and c != "accuracy.mean"]


def proposals(columns: list[str], family: str | None = None) -> list[str]:
    """The proposals of the likelihoods (of one family, or of all), in eval.json's order (q(z|x), q(z|x,y), q(z|y))."""
    families = (family,) if family else tuple(FAMILIES)
    return list(dict.fromkeys(c.split(".")[1] for c in columns if c.split(".")[0] in families and c.endswith(".mean")))


def scored(columns: list[str]) -> str:
    """x: the one modality of the first single-modality proposal (``image``), else ``x``."""
    return next((p for p in proposals(columns, "log_px") + proposals(columns) if "+" not in p), "x")


def class_of(columns: list[str]) -> str | None:
    """The class the probe and coherence read: the one predicted modality that no probe takes as input
    (the probe conditions on every modality but the class), else the one coherence target that is
    predicted; None when neither says."""
    inputs = {m for c in columns if c.startswith("probe.") for m in c[len("probe."):].split("+")}
    targets = {c.split(".")[2] for c in columns if c.startswith("coherence.cross.") and c.count(".") == 3}
    for names in ([m for m in predicted(columns) if inputs and m not in inputs],
                  [m for m in predicted(columns) if m in targets]):
        if len(names) == 1:
            return names[0]
    return None


def proposal_name(proposal: str, columns: list[str]) -> str:
    """``q(z | x), x = image``, ``q(z | x, y): every modality``, ``q(z | y), y = shape, colour``."""
    x, every = scored(columns), max(proposals(columns), key=lambda p: p.count("+"))
    given, ys = proposal.split("+"), [m for m in every.split("+") if m != x]
    if given == [x]:
        return f"q(z | x), x = {x}"
    if set(given) == set(every.split("+")) and len(given) > 1:
        return "q(z | x, y): every modality"
    if set(given) == set(ys):
        return f"q(z | y), y = {', '.join(ys)}" if len(ys) <= 5 else f"q(z | y), y = the {len(ys)} others"
    return proposal_label(proposal)


def accuracy_panels(columns: list[str], fair: bool = True) -> list[Panel]:
    """One panel per predicted modality and their mean: the model, the classifier trained on the
    paired rows only, the fair baselines (unless ``fair`` is False: :func:`fair_panel` draws them
    instead) and chance. More than :data:`MAX_ACCURACY_PANELS` modalities share one panel
    (:func:`accuracy_overview`)."""
    names, x = predicted(columns), scored(columns)
    if not names:
        return []
    if len(names) > MAX_ACCURACY_PANELS:
        return [accuracy_overview(columns)]
    panels = []
    for name in names + (["mean"] if len(names) > 1 else []):
        title = f"mean over the {len(names)} predicted modalities" if name == "mean" else f"{name} predicted from {x}"
        panel = Panel(title, ACCURACY_LABEL, [Series(f"accuracy.{name}", "multimodal model")], share=True)
        _add_references(panel, columns, name, fair)
        panels.append(panel)
    return panels


def fair_panel(columns: list[str]) -> Panel | None:
    """The model's accuracy (its mean over the predicted modalities) beside the fair baselines, the
    paired-only classifier and chance: a figure of its own when a study compares models or variants,
    a panel each, where the accuracy figure would hold too many lines."""
    names = predicted(columns)
    name = "mean" if len(names) > 1 else (names[0] if names else None)
    if name is None or not any(f"{k}.{name}" in columns for k in ("paired_probe", "vae_probe")):
        return None
    what = f"the mean over the {len(names)} predicted modalities" if name == "mean" else name
    panel = Panel(f"Did the unpaired data give a better code? {what} from {scored(columns)}", ACCURACY_LABEL,
                  [Series(f"accuracy.{name}", "multimodal model")], share=True)
    _add_references(panel, columns, name)
    return panel


def accuracy_overview(columns: list[str]) -> Panel | None:
    """Every predicted modality in one panel, a colour each, their mean in black beside the paired-only
    classifier's and chance's means."""
    names = predicted(columns)
    if not names:
        return None
    panel = Panel(f"Accuracy of each y predicted from {scored(columns)} alone", ACCURACY_LABEL, share=True)
    for i, name in enumerate(names):
        # after the proposals' three colours: the paper's Fig. 5 draws both kinds beside each other
        panel.series.append(Series(f"accuracy.{name}", name, "attribute", colour(i + 3), "o", linewidth=1.0,
                                   markersize=3.0))
    if len(names) > 1 and "accuracy.mean" in columns:
        panel.series.append(Series("accuracy.mean", "mean over the predicted modalities", "mean", MEAN, "o",
                                   linewidth=2.4))
    _add_references(panel, columns, "mean" if len(names) > 1 else names[0])
    return panel


def _add_references(panel: Panel, columns: list[str], name: str, fair: bool = True) -> None:
    suffix = ", mean" if name == "mean" and len(panel.series) > 1 else ""
    if f"baseline.{name}" in columns:
        panel.series.append(reference(f"baseline.{name}", "classifier on the paired rows only" + suffix, "baseline"))
    x = scored(columns)
    if fair and f"paired_probe.{name}" in columns:
        panel.series.append(reference(f"paired_probe.{name}", f"linear probe on the model's q(z | {x}), fitted on the "
                                      "paired rows" + suffix, "probe"))
    if fair and f"vae_probe.{name}" in columns:
        panel.series.append(reference(f"vae_probe.{name}", f"the same probe on an image-only VAE of every {x}" + suffix,
                                      "vae_probe"))
    if f"chance.{name}" in columns:
        panel.series.append(reference(f"chance.{name}", "chance (most frequent class)" + suffix, "chance"))


def likelihood_panel(columns: list[str], family: str) -> Panel | None:
    """``log_px``, ``log_pxy`` or ``log_px_given_y``: a line per proposal, each with its reliability."""
    target, label = FAMILIES[family]
    panel = Panel(f"{label}, x = {scored(columns)}", f"{label} [nats]")
    for i, proposal in enumerate(proposals(columns)):
        if f"{family}.{proposal}.mean" not in columns:
            continue  # the index keeps each proposal's colour the same in every panel
        # the first drawn widest, so that a proposal whose line coincides with it stays visible
        panel.series.append(Series(f"{family}.{proposal}.mean", proposal_name(proposal, columns), "proposal",
                                   colour(i), "osD^v"[i % 5], (f"{family}.{proposal}.ess",
                                                               f"var_log_w.{target}.{proposal}"),
                                   linewidth=max(0.9, 2.6 - 0.7 * i), markersize=max(3.0, 6.5 - 1.5 * i)))
    return panel if panel.series else None


def variance_panel(columns: list[str], target: str = "joint") -> Panel | None:
    """The variance of the log weights of one target (the joint's by default) per proposal; the
    other targets' are in results.csv (the conditional's equals the joint's under q(z | x) and
    q(z | x, y), and the marginal's is close to it)."""
    panel = Panel(f"Var[log w] of the {target} target", "Var[log w] [nats²]",
                  note="the other targets' variances are in results.csv" if target == "joint" else "")
    prefix = f"var_log_w.{target}."
    known = proposals(columns)
    known += [c[len(prefix):] for c in columns if c.startswith(prefix) and c[len(prefix):] not in known]
    for i, proposal in enumerate(known):
        column = f"{prefix}{proposal}"
        if column in columns:
            panel.series.append(Series(column, proposal_name(proposal, columns), "proposal", colour(i),
                                       "osD^v"[i % 5], linewidth=max(0.9, 2.6 - 0.7 * i),
                                       markersize=max(3.0, 6.5 - 1.5 * i)))
    return panel if panel.series else None


def coherence_panel(columns: list[str]) -> Panel | None:
    """Cross-modal coherence per number of modalities given (a ramp, dark to light), joint coherence
    (black) and chance for the class (grey)."""
    sizes = [c for c in columns if c.startswith("coherence.cross_by_size.")]
    cls = class_of(columns)
    panel = Panel(f"Coherence: generated modalities classified as the right {cls or 'class'}",
                  "coherence (fraction coherent)", share=True)
    for i, column in enumerate(sorted(sizes, key=lambda c: int(c.rsplit(".", 1)[1]))):
        size = column.rsplit(".", 1)[1]
        panel.series.append(Series(column, f"cross-modal, {size} modalit{'y' if size == '1' else 'ies'} given",
                                   "size", ramp(i, len(sizes)), "o"))
    if "coherence.joint" in columns:
        panel.series.append(Series("coherence.joint", "joint: every modality from z ~ p(z)", "joint", MEAN, "s"))
    if not panel.series:
        return None
    if cls and f"chance.{cls}" in columns:
        panel.series.append(reference(f"chance.{cls}", f"chance (most frequent {cls})", "chance"))
    return panel


def with_probe_sizes(rows: list[dict]) -> list[dict]:
    """``rows`` with ``probe_by_size.<k>``: the mean probe accuracy over the subsets of k modalities."""
    out = []
    for row in rows:
        by_size: dict[int, list[float]] = {}
        for key, value in row.items():
            if key.startswith("probe.") and isinstance(value, (int, float)) and math.isfinite(value):
                by_size.setdefault(key.count("+") + 1, []).append(float(value))
        out.append({**row, **{f"{PROBE_BY_SIZE}{k}": sum(v) / len(v) for k, v in sorted(by_size.items())}})
    return out


def probe_panel(columns: list[str]) -> Panel | None:
    """The latent probe from q(z | x) (blue, wide), its mean over the subsets of each size (a ramp) and
    chance for the class; ``columns`` from :func:`with_probe_sizes`' rows."""
    sizes = sorted((c for c in columns if c.startswith(PROBE_BY_SIZE)), key=lambda c: int(c.rsplit(".", 1)[1]))
    if not sizes:
        return None
    cls, x = class_of(columns), scored(columns)
    panel = Panel(f"Latent linear probe: {cls or 'the class'} read from the mean of q(z | S)", ACCURACY_LABEL,
                  share=True)
    if f"probe.{x}" in columns:
        panel.series.append(Series(f"probe.{x}", f"S = {{{x}}}", "model", MODEL, "o", linewidth=2.4, markersize=5.5))
    for i, column in enumerate(sizes):
        size = int(column.rsplit(".", 1)[1])
        n = sum(1 for c in columns if c.startswith("probe.") and c.count("+") + 1 == size)
        panel.series.append(Series(column, f"S of {size} modalit{'y' if size == 1 else 'ies'} (mean of {n})",
                                   "size", ramp(i, len(sizes)), "s", linewidth=1.2, markersize=3.5))
    if cls and f"chance.{cls}" in columns:
        panel.series.append(reference(f"chance.{cls}", f"chance (most frequent {cls})", "chance"))
    return panel
