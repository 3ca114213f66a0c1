"""`mvae train`: train (or resume) one run of any model of the table through the shared engine."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Optional

import typer

from mvae_cli.cli.train_recipe import TRAIN_DEFAULTS, defaults_text
from mvae_cli.errors import Interrupted, UserError


def _default_out(recipe) -> Path:
    if recipe.supervision is not None:
        level = f"supervision={recipe.supervision:g}"
    elif recipe.keep_prob is not None:
        level = f"keep_prob={recipe.keep_prob:g}"
    else:
        level = "full"
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = Path(recipe.data.path).stem if recipe.data.path else recipe.data.dataset
    return Path("runs") / f"{name}-{level}-seed={recipe.seed}-{stamp}"


def train_command(
    overrides: Optional[list[str]] = typer.Argument(None, metavar="KEY=VALUE", help="Recipe overrides, e.g. epochs=5 model.latent_dim=32."),
    data: Optional[Path] = typer.Option(None, "--data", metavar="PATH", help="A prepared dataset file (default: data/shapes.h5, prepared when missing)."),
    recipe_path: Optional[Path] = typer.Option(None, "--recipe", metavar="PATH", help=f"A recipe YAML file, or a shipped recipe's name (default: the quick start's networks and schedule, {defaults_text()})."),
    point: Optional[str] = typer.Option(None, "--point", metavar="KEY=VALUE,...", help="The grid point to train of a --recipe with a grid, e.g. supervision=0.1,seed=0."),
    supervision: Optional[float] = typer.Option(None, "--supervision", metavar="F", help="Fraction of paired examples, in [0, 1] (default: the recipe's; without one, every example shows every modality)."),
    keep_prob: Optional[float] = typer.Option(None, "--keep-prob", metavar="P", help="Keep each modality with this probability, in (0, 1]."),
    epochs: Optional[int] = typer.Option(None, "--epochs", metavar="N", help=f"Number of epochs (with --resume: train up to this many) (default: the recipe's, without one {TRAIN_DEFAULTS['epochs']})."),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="N", help="Seed for the mask, initialisation and sampling (default: the recipe's, without one 0)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="RUN_DIR", help="Run directory (default: runs/<dataset>-<level>-seed=<n>-<time>)."),
    device: Optional[str] = typer.Option(None, "--device", metavar="auto|cpu|cuda", help="auto (CUDA when present), cpu or cuda."),
    precision: Optional[str] = typer.Option(None, "--precision", metavar="fp32|bf16|fp16", help="fp32; bf16 autocast on CUDA or on a CPU with bf16 instructions; fp16 on CUDA."),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="RUN_DIR", help="Continue the run in this directory from its last checkpoint."),
    nproc: Optional[int] = typer.Option(None, "--nproc", metavar="N", help="Data-parallel ranks on this machine (gloo on CPU, NCCL with one GPU each)."),
    tracker: Optional[list[str]] = typer.Option(None, "--tracker", metavar="tensorboard|mlflow", help="Also log to tensorboard or mlflow (repeatable)."),
    keep: str = typer.Option("both", "--keep", metavar="both|best|last", help="Checkpoints kept once the run is done: both, best.pt only (evaluation; no resume) or last.pt only (resume; eval --checkpoint last)."),
) -> None:
    """Train (or resume) one run of the recipe's model (model.name: any model of the table, default mvae) on a dataset."""
    from mvae_cli.cli.hooks import training_hooks
    from mvae_cli.cli.progress import TrainingDisplay, console, make_progress, plural
    from mvae_cli.data.prepare import ensure_dataset
    from mvae_cli.engine.device import select_device
    from mvae_cli.engine.distributed import init_from_env
    from mvae_cli.engine.launch import train_on_ranks
    from mvae_cli.engine.loop import train
    from mvae_cli.engine.run import read_config
    from mvae_cli.cli.recipes import recipe_path as shipped_recipe
    from mvae_cli.cli.train_recipe import train_recipe
    from mvae_cli.recipe import recipe_from_dict, recipe_to_dict, set_dotted

    if supervision is not None and keep_prob is not None:
        raise UserError("give --supervision or --keep-prob, not both")
    if keep not in KEEP:
        raise UserError(f"--keep must be one of {', '.join(KEEP)}, got {keep!r}")
    options = {"epochs": epochs, "seed": seed, "device": device, "precision": precision,
               "supervision": supervision, "keep_prob": keep_prob, "nproc": nproc, "trackers": tracker}
    if resume is not None:
        given = {"--data": data, "--recipe": recipe_path, "--point": point, "--supervision": supervision,
                 "--keep-prob": keep_prob, "--seed": seed, "--out": out, "--precision": precision}
        extra = [flag for flag, value in given.items() if value is not None] + (["KEY=VALUE"] if overrides else [])
        if extra:
            raise UserError(f"--resume continues a run as it was recorded; it takes only --epochs, --device, --nproc and --tracker, not {', '.join(extra)}")
        raw = recipe_to_dict(read_config(resume))
        if not (resume / "last.pt").is_file() and (resume / "best.pt").is_file():
            raise UserError(f"{resume} kept only best.pt (trained with --keep best), so it cannot be resumed; "
                            "train a new run")
        for key in ("epochs", "device", "nproc", "trackers"):
            if options[key] is not None:
                set_dotted(raw, key, options[key])
        recipe, run_dir = recipe_from_dict(raw), resume
    else:
        extra = {key: value for key, value in options.items() if value is not None}
        if data is not None:
            if data.is_dir():
                raise UserError(f"data file {data} is a folder; give the .h5 file `mvae prepare` wrote")
            if not data.is_file():
                raise UserError(f"data file {data} does not exist; build it with `mvae prepare`")
            extra["data.path"] = str(data)
        flags = {key: "--" + key.replace("_", "-") for key in options} | {"data.path": "--data", "trackers": "--tracker"}
        recipe = train_recipe(recipe_path and shipped_recipe(recipe_path), overrides or [], extra, point, flags,
                              shown=recipe_path and str(recipe_path))
        run_dir = out or _default_out(recipe)
        ensure_dataset(recipe.data)  # the embedded default dataset is built on first use

    world = init_from_env(select_device(recipe.device).type)  # launched by torchrun: this is one rank
    if world.active and recipe.nproc > 1:
        raise UserError("under torchrun the ranks are torchrun's; drop --nproc")
    if not world.is_main:
        train(recipe, run_dir, hooks=training_hooks())
        return
    display = None
    try:
        with make_progress(transient=True) as progress:
            display = TrainingDisplay(progress)
            result = train_on_ranks(recipe, run_dir, progress=display, hooks=training_hooks())
            display.close()
    except KeyboardInterrupt:
        done = display.done if display is not None else 0
        if done == 0:
            raise Interrupted(f"no epoch of {run_dir} had finished, so there is nothing to resume; "
                              "run the same command again") from None
        raise Interrupted(f"{run_dir} holds {done} of {recipe.epochs} epochs (last.pt); "
                          f"continue with `mvae train --resume {run_dir}`") from None
    console.print(f"[green]done[/]: {plural(result.epochs_done, 'epoch')}, best validation ELBO {result.best_valid_elbo:.3f}, "
                  f"{result.seconds:.1f} s of training → {result.run_dir}", highlight=False)
    console.print(checkpoint_line(result.run_dir, keep), highlight=False)
    from mvae_cli.cli.findings import print_findings
    from mvae_cli.evaluate.diagnostics import last_epoch_findings

    print_findings(last_epoch_findings(result.run_dir), console)  # from the last epoch's metrics.jsonl line


KEEP = ("both", "best", "last")


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e5 else f"{n_bytes / 1e3:.0f} kB"


def checkpoint_line(run_dir: Path, keep: str = "both") -> str:
    """Remove the checkpoint ``keep`` leaves out (``best``: last.pt, ``last``: best.pt), then say what is
    kept and how large: ``checkpoints: best.pt 5.5 MB, last.pt 5.5 MB (--keep best|last keeps one)``."""
    for name in KEEP[1:]:
        if keep not in ("both", name):
            (Path(run_dir) / f"{name}.pt").unlink(missing_ok=True)
    kept = [(f"{name}.pt", Path(run_dir) / f"{name}.pt") for name in KEEP[1:]]
    sizes = ", ".join(f"{name} {_size(path.stat().st_size)}" for name, path in kept if path.is_file())
    note = {"both": "--keep best|last keeps one", "best": "--keep best: no resume",
            "last": "--keep last: evaluate with --checkpoint last"}[keep]
    return f"checkpoints: {sizes or 'none'} ({note})"


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
