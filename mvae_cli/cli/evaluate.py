"""``mvae eval [RUN_DIR]``: importance-sampled log-likelihoods, weight variances and accuracy of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mvae_cli.errors import UserError


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
    """The figures of an ``eval.json`` mapping as one rich table."""
    from rich import box
    from rich.table import Table

    proposals = list(result["log_px"])
    table = Table(title=f"{result['split']} split, {result['n_examples']:,} examples, K = {result['particles']:,}, "
                        f"{result['prior_samples']:,} prior samples, {result['checkpoint']} checkpoint, "
                        f"{result['seconds']:.1f} s",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    from mvae_cli.evaluate import proposal_label

    x, y = result["x"], ", ".join(result["y"])
    # three proposals make the table wide: the figure's name is the column that must stay legible
    table.add_column("figure", no_wrap=True, min_width=len(f"log p({x} | {y})"))
    for name in proposals:
        table.add_column(proposal_label(name), justify="right", no_wrap=True)
        table.add_column("ESS", justify="right", no_wrap=True)
    x, y = result["x"], ", ".join(result["y"])
    for key, label in (("log_px", f"log p({x})"), ("log_pxy", f"log p({x}, {y})"),
                       ("log_px_given_y", f"log p({x} | {y})")):
        cells = []
        for v in result[key].values():
            cells += ["not defined", ""] if v is None else [f"{v['mean']:.2f} ± {v['se']:.2f}", f"{v['ess']:,.1f}"]
        table.add_row(label, *cells)
    for key in ("marginal", "joint", "conditional"):
        cells = []
        for name in proposals:
            value = result["var_log_w"][key][name]
            cells += ["not defined" if value is None else f"{value:.4g}", ""]
        table.add_row(f"var log w {key}", *cells)
    for name, value in (result["accuracy"] or {}).items():
        label = "accuracy, mean" if name == "mean" else f"accuracy, {name}"
        table.add_row(label, f"{value:.4f}", *([""] * (2 * len(proposals) - 1)))
    blank = [""] * (2 * len(proposals) - 1)
    coherence = result.get("coherence")
    if coherence:
        for size, value in coherence["cross_by_size"].items():
            table.add_row(f"coherence, {size} given", f"{value:.4f}", *blank)
        if coherence["joint"] is not None:
            table.add_row("coherence, joint", f"{coherence['joint']:.4f}", *blank)
    for subset, value in (result.get("probe") or {}).items():
        table.add_row(f"latent probe, {subset}", f"{value:.4f}", *blank)
    return table


def eval_command(
    run_dir: Annotated[Optional[Path], typer.Argument(
        help="A run directory (default: the most recent run under runs/).")] = None,
    particles: Annotated[int, typer.Option("--particles", "-k", help="Importance samples K per example and proposal.")] = 1000,
    split: Annotated[str, typer.Option(help="test or valid.")] = "test",
    checkpoint: Annotated[str, typer.Option(help="best or last.")] = "best",
    limit: Annotated[Optional[int], typer.Option(help="Evaluate the first N examples only.")] = None,
    prior_samples: Annotated[int, typer.Option(
        "--prior-samples", help="Samples of p(z) for log p(y) in log p(x|y) = log p(x,y) − log p(y).")] = 5000,
    x: Annotated[Optional[str], typer.Option("--x", help="The scored modality (default: the first image modality).")] = None,
    y: Annotated[Optional[str], typer.Option(
        "--y", help="Conditioning modalities, comma-separated (default: every other modality).")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the particles; results do not depend on chunk or batch size.")] = 0,
    max_memory: Annotated[Optional[str], typer.Option(
        "--max-memory", help="Memory for one chunk of particles, e.g. 2GB (default: a quarter of free RAM / GPU memory).")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", help="Examples per batch (default: about 262,144 particles' worth).")] = None,
) -> None:
    """Estimate log p(x), log p(x,y) and log p(x|y) by importance sampling under q(z|x) and q(z|x,y),
    the variance of the log weights, and the accuracy of predicting y from x; write RUN_DIR/eval.json."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from mvae_cli.engine.run import latest_run
    from mvae_cli.evaluate.run_eval import EVAL_FILE, evaluate_run

    y_names = parse_names(y, "--y")
    run_dir = run_dir if run_dir is not None else latest_run()
    with Progress(TextColumn("[bold]evaluating"), BarColumn(), MofNCompleteColumn(), TextColumn("examples"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bars:
        task = bars.add_task("eval", total=None)

        def report(done: int, total: int) -> None:
            bars.update(task, completed=done, total=total)

        result = evaluate_run(run_dir, particles=particles, prior_samples=prior_samples, split=split,
                              checkpoint=checkpoint, limit=limit, x=x, y=y_names, seed=seed, max_memory=max_memory,
                              device=device, batch_size=batch_size, progress=report)
    console = Console()
    console.print(results_table(result))
    console.print(f"wrote {Path(run_dir) / EVAL_FILE}")


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to ``app``."""
    app.command("eval")(eval_command)
