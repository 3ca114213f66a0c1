"""``mvae eval [RUN_DIR]``: importance-sampled log-likelihoods, weight variances and accuracy of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mvae_cli.errors import UserError
from mvae_cli.eval_config import EvalConfig

DEFAULTS = EvalConfig()  # every option's default (torch-free: read at start-up)


def parse_names(text: str | None, option: str) -> list[str] | None:
    """``"label,attr"`` → ``["label", "attr"]``; None when not given.

    Raises:
        UserError: an empty list or an empty item.
    """
    if text is None:
        return None
    names = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not name for name in names):
        raise UserError(f"{option}: give modality names separated by commas, e.g. label or label,attr; got {text!r}")
    return names


def results_table(result: dict):
    """The likelihood figures of an ``eval.json`` mapping as one rich table, about 80 columns wide:
    a column per proposal, the effective sample sizes on their own rows."""
    from rich import box
    from rich.table import Table

    from mvae_cli.evaluate import proposal_label

    proposals = list(result["log_px"])
    table = Table(title=f"{result['split']} split, {result['n_examples']:,} examples, K = {result['particles']:,}, "
                        f"{result['prior_samples']:,} prior samples, {result['checkpoint']} checkpoint, "
                        f"{result['seconds']:.1f} s",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    x, y = result["x"], ", ".join(result["y"])
    # three proposals make the table wide: the figure's name is the column that must stay legible
    table.add_column("figure", no_wrap=True, min_width=len(f"log p({x} | {y})"))
    for name in proposals:
        table.add_column(proposal_label(name), justify="right")
    figures = (("log_px", f"log p({x})"), ("log_pxy", f"log p({x}, {y})"), ("log_px_given_y", f"log p({x} | {y})"))
    for key, label in figures:
        table.add_row(label, *("not defined" if v is None else f"{v['mean']:.2f} ± {v['se']:.2f}"
                               for v in result[key].values()))
    for key, label in figures:
        table.add_row(f"ESS, {label}", *("–" if v is None else f"{v['ess']:,.1f}" for v in result[key].values()))
    for key in ("marginal", "joint", "conditional"):
        table.add_row(f"var log w {key}", *("not defined" if result["var_log_w"][key][name] is None
                                            else f"{result['var_log_w'][key][name]:.4g}" for name in proposals))
    blank = [""] * (len(proposals) - 1)
    coherence = result.get("coherence")
    if coherence:
        for size, value in coherence["cross_by_size"].items():
            table.add_row(f"coherence, {size} given", f"{value:.4f}", *blank)
        if coherence["joint"] is not None:
            table.add_row("coherence, joint", f"{coherence['joint']:.4f}", *blank)
    for subset, value in (result.get("probe") or {}).items():
        table.add_row(f"latent probe, {subset}", f"{value:.4f}", *blank)
    return table


def accuracy_table(result: dict):
    """The accuracy of each y predicted from x beside the classifier trained on the paired rows
    only and chance (where ``eval.json`` has them); None without a predicted modality."""
    from rich import box
    from rich.table import Table

    if not result.get("accuracy"):
        return None
    baseline, chance = result.get("baseline") or {}, result.get("chance") or {}
    table = Table(title=f"accuracy of y predicted from {result['x']} alone", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("y", no_wrap=True)
    table.add_column("model", justify="right")
    if baseline or chance:
        table.add_column("paired rows only", justify="right")
        table.add_column("chance", justify="right")
    for name, value in result["accuracy"].items():
        row = [name, f"{value:.4f}"]
        if baseline or chance:
            row += [f"{figures[name]:.4f}" if name in figures else "–" for figures in (baseline, chance)]
        table.add_row(*row)
    return table


def check_request(run_dir: Path, max_memory: str | None, device: str) -> None:
    """Refuse, before loading anything, an evaluation that cannot be done or cannot be saved.

    Any ``--particles`` fits: the estimator draws an example's particles slice by slice and
    reduces the log weights chunk by chunk, within the memory budget.

    Raises:
        UserError: ``RUN_DIR/eval.json`` is a folder; an unreadable ``--max-memory``; CUDA asked
            for without one.
    """
    from mvae_cli.engine.device import select_device
    from mvae_cli.evaluate.run_eval import EVAL_FILE, parse_size

    target = Path(run_dir) / EVAL_FILE
    if target.is_dir():
        raise UserError(f"{target} is a folder, so the results cannot be written there; move it away")
    select_device(device)
    if max_memory is not None:
        parse_size(max_memory)


def eval_command(
    run_dir: Annotated[Optional[Path], typer.Argument(
        metavar="RUN_DIR", help="A run directory (default: the most recent run under runs/).")] = None,
    particles: Annotated[int, typer.Option(
        "--particles", "-k", metavar="K", help="Importance samples K per example and proposal.")] = DEFAULTS.particles,
    split: Annotated[str, typer.Option(metavar="test|valid", help="The split to evaluate.")] = DEFAULTS.split,
    checkpoint: Annotated[str, typer.Option(
        metavar="best|last", help="The checkpoint: best validation ELBO, or the last epoch.")] = DEFAULTS.checkpoint,
    limit: Annotated[Optional[int], typer.Option(metavar="N", help="Evaluate the first N examples only.")] = DEFAULTS.limit,
    prior_samples: Annotated[int, typer.Option(
        "--prior-samples", metavar="S",
        help="Samples of p(z) for log p(y) in log p(x|y) = log p(x,y) − log p(y).")] = DEFAULTS.prior_samples,
    x: Annotated[Optional[str], typer.Option(
        "--x", metavar="NAME", help="The scored modality (default: the first image modality).")] = DEFAULTS.x,
    y: Annotated[Optional[str], typer.Option(
        "--y", metavar="NAME,...", help="Conditioning modalities, comma-separated (default: every other modality).")] = None,
    seed: Annotated[int, typer.Option(
        metavar="N", help="Seeds the particles; results do not depend on chunk or batch size.")] = DEFAULTS.seed,
    max_memory: Annotated[Optional[str], typer.Option(
        "--max-memory", metavar="SIZE", help="Memory for one chunk of particles, e.g. 2GB (default: a quarter of free RAM / GPU memory).")] = None,
    device: Annotated[str, typer.Option(metavar="auto|cpu|cuda", help="auto (CUDA when present), cpu or cuda.")] = "auto",
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", metavar="N", help="Examples per batch (default: about 262,144 particles' worth).")] = None,
    baseline: Annotated[bool, typer.Option(
        "--baseline/--no-baseline", help="Also report chance and a classifier trained on the paired rows only.")] = DEFAULTS.baseline,
    precision: Annotated[str, typer.Option(
        metavar="fp32|bf16", help="fp32, or bf16: networks under bf16 autocast (CUDA, or a CPU with bf16 instructions), sums in fp32.")] = DEFAULTS.precision,
) -> None:
    """Evaluate a run: importance-sampled log-likelihoods, weight variances and accuracy; write RUN_DIR/eval.json.

    Estimates log p(x), log p(x,y) and log p(x|y) by importance sampling under each proposal the run's model
    defines (q(z|x), q(z|x,y), q(z|y); for any model of the table, a figure it does not define is null, with the
    reason), the variance of the log weights, and the accuracy of predicting y from x.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from mvae_cli.engine.run import latest_run
    from mvae_cli.evaluate.run_eval import EVAL_FILE, EXAMPLES_FILE, evaluate_run
    from mvae_cli.recipe import check_eval

    # the options are the recipe's eval section: validated by the same code, with the same errors
    config = check_eval(EvalConfig(particles=particles, prior_samples=prior_samples, split=split, checkpoint=checkpoint,
                                   x=x, y=parse_names(y, "--y"), limit=limit, seed=seed, baseline=baseline,
                                   precision=precision), options=True)
    run_dir = run_dir if run_dir is not None else latest_run()
    check_request(run_dir, max_memory, device)
    with Progress(TextColumn("[bold]evaluating"), BarColumn(), MofNCompleteColumn(), TextColumn("examples"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bars:
        task = bars.add_task("eval", total=None)

        def report(done: int, total: int) -> None:
            bars.update(task, completed=done, total=total)

        result = evaluate_run(run_dir, config, device=device, max_memory=max_memory, batch_size=batch_size,
                              progress=report)
    from mvae_cli.evaluate.collapse import accuracy_warnings

    console = Console()
    console.print(results_table(result))
    accuracy = accuracy_table(result)
    if accuracy is not None:
        console.print(accuracy)
    for line in [*result.get("latent_warnings", []),
                 *accuracy_warnings(result.get("accuracy") or {}, result.get("chance") or {}, result.get("baseline"),
                                    result["x"], probe=result.get("probe"), probed=_class_name(run_dir))]:
        Console(stderr=True).print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    console.print(f"wrote {Path(run_dir) / EVAL_FILE} (and every figure per example: {EXAMPLES_FILE})")


def _class_name(run_dir) -> str | None:
    """The modality the latent probe reads: the run's class (:func:`~mvae_cli.evaluate.coherence.class_modality`)."""
    from mvae_cli.engine.run import run_specs
    from mvae_cli.evaluate.coherence import class_modality
    from mvae_cli.atomic import read_json

    info = read_json(Path(run_dir) / "run.json")
    return class_modality(run_specs(info)) if info else None


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to ``app``."""
    app.command("eval")(eval_command)
