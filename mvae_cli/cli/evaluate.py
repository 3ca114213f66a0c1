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


def check_request(run_dir: Path, max_memory: str | None, device: str, checkpoint: str | None = None) -> None:
    """Refuse, before loading anything, an evaluation that cannot be done or cannot be saved.

    Any ``--particles`` fits: the estimator draws an example's particles slice by slice and
    reduces the log weights chunk by chunk, within the memory budget.

    Raises:
        UserError: ``RUN_DIR/eval.json`` is a folder; an unreadable ``--max-memory``; CUDA asked
            for without one; the checkpoint asked for was not kept (``mvae train --keep``) while the
            other was.
    """
    from mvae_cli.engine.device import select_device
    from mvae_cli.evaluate.run_eval import EVAL_FILE, parse_size

    target = Path(run_dir) / EVAL_FILE
    if target.is_dir():
        raise UserError(f"{target} is a folder, so the results cannot be written there; move it away")
    select_device(device)
    if max_memory is not None:
        parse_size(max_memory)
    other = {"best": "last", "last": "best"}.get(checkpoint or "")
    if other and not (Path(run_dir) / f"{checkpoint}.pt").is_file() and (Path(run_dir) / f"{other}.pt").is_file():
        raise UserError(f"{run_dir} has no {checkpoint}.pt, only {other}.pt (`mvae train --keep {other}` keeps that "
                        f"one alone): evaluate it with --checkpoint {other}")


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

    from mvae_cli.cli.eval_tables import eval_report
    from mvae_cli.cli.findings import print_findings
    from mvae_cli.cli.progress import EvalDisplay, make_eval_progress
    from mvae_cli.evaluate.collapse import accuracy_findings
    from mvae_cli.evaluate.diagnostics import findings_from_flat, flat_latent
    from mvae_cli.engine.run import latest_run
    from mvae_cli.evaluate.run_eval import EVAL_FILE, EXAMPLES_FILE, evaluate_run
    from mvae_cli.recipe import check_eval

    # the options are the recipe's eval section: validated by the same code, with the same errors
    config = check_eval(EvalConfig(particles=particles, prior_samples=prior_samples, split=split, checkpoint=checkpoint,
                                   x=x, y=parse_names(y, "--y"), limit=limit, seed=seed, baseline=baseline,
                                   precision=precision), options=True)
    run_dir = run_dir if run_dir is not None else latest_run()
    check_request(run_dir, max_memory, device, checkpoint)
    with make_eval_progress() as bars:
        display = EvalDisplay(bars)
        result = evaluate_run(run_dir, config, device=device, max_memory=max_memory, batch_size=batch_size,
                              progress=display.examples, stage=display.stage)
        display.close()
    class_name = _class_name(run_dir)
    Console().print(eval_report(result, class_name))
    print_findings([*findings_from_flat(flat_latent(result.get("latent") or {})),
                    *accuracy_findings(result.get("accuracy") or {}, result.get("chance") or {}, result.get("baseline"),
                                       result["x"], probe=result.get("probe"), probed=class_name)])
    Console().print(f"wrote {Path(run_dir) / EVAL_FILE} (and every figure per example: {EXAMPLES_FILE})",
                    highlight=False)


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
