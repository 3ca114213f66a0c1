"""The ``mvae`` Typer application: registers one command per module and turns
:class:`~mvae_cli.errors.UserError` into one line on stderr and exit code 2."""

from __future__ import annotations

import sys

from mvae_cli.engine.threads import configure_threads

configure_threads()  # before anything imports torch: OpenMP reads its wait policy once

import typer
from typer.core import TyperGroup

from mvae_cli import __version__
from mvae_cli.errors import UserError


class _Group(TyperGroup):
    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except UserError as error:
            # One line, no usage block, no traceback. typer.Exit is caught by every typer
            # version, whether it runs the `click` package or its own vendored copy.
            typer.echo(f"Error: {error}", err=True)
            raise typer.Exit(2) from None


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
    from mvae_cli.cli import evaluate

    evaluate.register(app)


_register()


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
