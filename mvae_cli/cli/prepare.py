"""``mvae prepare [DATASET]`` and ``mvae info PATH``: build a dataset file, show one."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional

import typer

from mvae_cli.errors import UserError

DATASET_HELP = ("shapes (generated, the default), mnist, fashion-mnist, binary-mnist, multimnist, polymnist, "
                "celeba, celeba19, transforms (with --base) or custom (with --source FILE --spec SPEC.yaml).")


def parse_float_list(text: str | None, option: str) -> list[float]:
    """Parse a comma-separated list such as ``0.01,0.1,1``.

    Raises:
        UserError: an item that is empty or not a number, naming the option.
    """
    if text is None or not text.strip():
        return []
    values = []
    for item in text.split(","):
        try:
            values.append(float(item))
        except ValueError:
            raise UserError(f"{option}: {item.strip()!r} is not a number "
                            "(give a comma-separated list such as 0.01,0.1,1)") from None
    return values


@contextlib.contextmanager
def progress_bars() -> Iterator[Callable[[str, int, int], None] | None]:
    """Yield a ``progress(task, done, total)`` callback drawn as rich bars on stderr.

    Off a terminal (pipes, logs, tests) it yields None: bars there are noise.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    with Progress(TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bars:
        tasks: dict[str, int] = {}

        def report(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = bars.add_task(task, total=total)
            bars.update(tasks[task], completed=done, total=total)

        yield report


def prepare(
    dataset: Annotated[str, typer.Argument(metavar="DATASET", help=f"Dataset to build: {DATASET_HELP}")] = "shapes",
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", metavar="PATH", help="File to write (default: data/<dataset>.h5).")] = None,
    source: Annotated[Optional[Path], typer.Option(
        metavar="DIR|FILE", help="MNIST family, multimnist and polymnist: folder with the four IDX files (raw or .gz); celeba, celeba19 and "
             "transforms --base celeba: folder with img_align_celeba/, list_attr_celeba.txt and "
             "list_eval_partition.txt (without --source these are downloaded); custom: your .npz or .h5 file.")
    ] = None,
    base: Annotated[Optional[str], typer.Option(
        metavar="celeba|shapes", help="transforms: the images to transform, celeba or shapes.")] = None,
    spec: Annotated[Optional[Path], typer.Option(
        metavar="SPEC.yaml", help="custom: the YAML spec of your arrays (modalities, optional split fractions).")] = None,
    backgrounds: Annotated[Optional[Path], typer.Option(
        metavar="DIR", help="polymnist: a folder with five background images, one per modality (default: five "
                            "procedural textures).")] = None,
    seed: Annotated[int, typer.Option(
        metavar="N", help="Seeds the generated data (shapes, multimnist), the custom split and every mask.")] = 0,
    supervision: Annotated[str, typer.Option(
        metavar="LIST", help="Paired fractions in [0, 1] to store masks for, e.g. 0.001,0.01,0.1,1.")] = "",
    keep_prob: Annotated[str, typer.Option(
        "--keep-prob", metavar="LIST", help="Keep probabilities in (0, 1] to store masks for, e.g. 0.1,0.5.")] = "",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    n_train: Annotated[Optional[int], typer.Option(
        "--n-train", metavar="N", help="Training examples (default: shapes 20,000; MNIST, multimnist 50,000; "
                          "read datasets: all of the source's).")] = None,
    n_valid: Annotated[Optional[int], typer.Option(
        "--n-valid", metavar="N", help="Validation examples (default: shapes 2,000; MNIST, multimnist 10,000).")] = None,
    n_test: Annotated[Optional[int], typer.Option(
        "--n-test", metavar="N", help="Test examples (default: shapes 2,000; MNIST, multimnist 10,000).")] = None,
) -> None:
    """Build one dataset file (every split, and the training masks asked for) and print its summary.

    Every model trains on the same file: the masks say which modalities each training example shows, and
    `mvae train` builds a mask the file lacks. The file appears only when complete; an existing one needs --force.
    """
    from mvae_cli.cli.summary import print_summary
    from mvae_cli.data.format import read_dataset
    from mvae_cli.data.prepare import prepare_dataset

    levels = parse_float_list(supervision, "--supervision")
    probs = parse_float_list(keep_prob, "--keep-prob")
    sizes = {"train": n_train, "valid": n_valid, "test": n_test}
    with progress_bars() as report:
        path = prepare_dataset(
            dataset, out if out is not None else Path("data") / f"{dataset}.h5",
            source=source, seed=seed, supervision=levels, keep_prob=probs, force=force,
            sizes=sizes, progress=report, base=base, spec=spec, backgrounds=backgrounds,
        )
    with read_dataset(path) as ds:
        print_summary(ds)


def info(path: Annotated[Path, typer.Argument(metavar="PATH", help="A dataset file written by `mvae prepare`.")]) -> None:
    """Show a dataset file: modalities, split sizes and every training mask with its counts."""
    from mvae_cli.cli.summary import print_summary
    from mvae_cli.data.format import read_dataset

    with read_dataset(path) as ds:
        print_summary(ds)


def register(app: typer.Typer) -> None:
    """Add the ``prepare`` and ``info`` commands to ``app``."""
    app.command("prepare")(prepare)
    app.command("info")(info)
