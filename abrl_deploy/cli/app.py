"""The Typer app and the error handling every command shares; the commands are registered in
``cli/__init__.py`` (this module imports none of them: no import circle)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from abrl_deploy import __version__
from abrl_deploy.errors import AbrlError

app = typer.Typer(
    name="abrl",
    help="Train, export and benchmark ABRL image classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # rich markup: help texts write "\\[default: x]" so that rich shows the brackets
    rich_markup_mode="rich",
)
err_console = Console(stderr=True)
_state = {"debug": False}
F = TypeVar("F", bound=Callable[..., Any])


def _version(value: bool) -> None:
    if value:
        typer.echo(f"abrl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    _state["debug"] = debug


def handle_errors(fn: F) -> F:
    """Turn an AbrlError into one line on stderr and its exit code (a traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AbrlError as exc:
            if _state["debug"]:
                raise
            # escape: messages hold text like 'abrl[gpu]' that rich would read as markup
            message = f"[bold red]error:[/] {escape(str(exc))}"
            err_console.print(message, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]
