"""The ``mvae`` Typer application: registers one command per module and turns
:class:`~mvae_cli.errors.UserError` into one line on stderr and exit code 2.

Importing it changes no process-wide setting: :func:`main`, the console script, switches the CPU
speed-ups on (:func:`mvae_cli.accel.enable`) before any command imports torch.
"""

from __future__ import annotations

import re
import signal
import sys

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from mvae_cli import __version__, accel
from mvae_cli.errors import Interrupted, UserError, file_fault


def reflow(text: str | None) -> str | None:
    """Join the hard-wrapped lines of each paragraph: help text is reflowed to the terminal's width,
    and typer's rich mode keeps single newlines after the first paragraph (ragged lines)."""
    if not text:
        return text
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def _tidy(param) -> None:
    """What the type column of the help shows: nothing for a flag (typer would print ``<bool>``),
    ``...`` for a variadic argument named by its metavar (not ``<list[str]>``), nothing for a named
    argument (its metavar says it)."""
    if isinstance(param, TyperOption) and param.is_flag:
        param.metavar = ""
    elif isinstance(param, TyperArgument) and param.metavar is not None:
        shown = "..." if param.nargs != 1 else ""
        param.display_type_rich = lambda ctx: shown  # this instance only; typer has no setting for it


class _Command(TyperCommand):
    """Every ``mvae`` subcommand: reflowed help, readable type column."""

    def __init__(self, *args, help: str | None = None, **kwargs):
        super().__init__(*args, help=reflow(help), **kwargs)

    def get_params(self, ctx: typer.Context):
        params = super().get_params(ctx)
        for param in params:
            _tidy(param)
        return params


class _Group(TyperGroup):
    def get_params(self, ctx: typer.Context):
        params = super().get_params(ctx)
        for param in params:
            _tidy(param)
        return params

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except (UserError, OSError) as error:
            # A fault of the machine met outside an atomic write (a folder that cannot be created,
            # a full disk while appending a log) is reported like bad input; other OSErrors are bugs.
            error = error if isinstance(error, UserError) else file_fault(error)
            if error is None:
                raise
            # One line, no usage block, no traceback. typer.Exit is caught by every typer
            # version, whether it runs the `click` package or its own vendored copy.
            typer.echo(f"Error: {error}", err=True)
            raise typer.Exit(2) from None
        except Interrupted as stop:
            typer.echo(f"Interrupted: {stop}", err=True)
            raise typer.Exit(130) from None
        except KeyboardInterrupt:  # a command that has nothing to resume
            typer.echo("Interrupted: stopped; no file was left half-written (each is written whole or not at all)", err=True)
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_Group,
    help="Weak-supervision studies with multimodal variational autoencoders (MVAE).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mvae {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Weak-supervision studies with multimodal variational autoencoders (MVAE)."""


def _register() -> None:
    # Command modules import torch and friends lazily, so `mvae --help` stays fast.
    from mvae_cli.cli import prepare, train

    prepare.register(app)
    train.register(app)
    from mvae_cli.cli import plot, sweep

    sweep.register(app)
    plot.register(app)
    from mvae_cli.cli import evaluate, report

    evaluate.register(app)
    report.register(app)
    from mvae_cli.cli import recipes

    recipes.register(app)
    for command in app.registered_commands:
        if command.cls in (None, TyperCommand):  # typer's default: give every command our help rendering
            command.cls = _Command


_register()


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt  # so that `kill` cleans up as Ctrl-C does: temporary files, worker processes


def main() -> None:
    """Console-script entry point."""
    accel.enable()  # before any command imports torch: OpenMP reads its wait policy once
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(app())
