"""The `tkit` command line.

Heavy imports (torch, plugins) happen inside commands, so `tkit --help` answers at once. Plugins'
own commands are loaded only when the command line names a command that is not built in.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from translate_kit import __version__
from translate_kit.cli import data, export, plugins, recipes, serve, train, translate
from translate_kit.cli.common import Session
from translate_kit.cli.eval import eval_command

__all__ = ["BUILTIN_COMMANDS", "make_app", "main"]

BUILTIN_COMMANDS = ("train", "translate", "eval", "export", "serve", "data", "plugins", "recipes")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"translate-kit {__version__}")
        raise typer.Exit()


def make_app(*, plugin_commands: bool = False, plugins_dir: Path | None = None) -> typer.Typer:
    """Build the `tkit` app; with `plugin_commands`, plugins add their commands too."""
    app = typer.Typer(
        name="tkit",
        help="translate-kit: train and run image-to-image translation models (pix2pix and friends) from TOML recipes.",
        epilog="Plugins may add commands of their own: `tkit plugins list` shows them.",
        rich_markup_mode="rich",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def root(
        ctx: typer.Context,
        plugins_dir: Annotated[
            Optional[Path],
            typer.Option("--plugins-dir", help="Also load every *.py module in this folder as a plugin."),
        ] = None,
        version: Annotated[
            bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
        ] = False,
    ) -> None:
        ctx.obj = Session(plugins_dir=plugins_dir)

    app.command(name="train")(train.train)
    app.command(name="translate")(translate.translate)
    app.command(name="eval")(eval_command)
    app.command(name="export")(export.export)
    app.command(name="serve")(serve.serve)
    data_commands = data.data_group()
    app.add_typer(data_commands, name="data")
    app.add_typer(plugins.app, name="plugins")
    app.add_typer(recipes.app, name="recipes")
    if plugin_commands:
        from translate_kit.plugins import get_plugin_manager

        hook = get_plugin_manager(plugins_dir=plugins_dir).hook
        hook.translate_kit_add_commands(app=app)
        hook.translate_kit_add_data_commands(data=data_commands)
    return app


def _command_and_plugins_dir(args: list[str]) -> tuple[list[str], Path | None]:
    """The command line's first two words that are not options (command, sub-command), and --plugins-dir."""
    plugins_dir, words, skip, closed = None, [], False, False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == "--plugins-dir" and i + 1 < len(args):
            plugins_dir, skip = Path(args[i + 1]), True
        elif arg.startswith("--plugins-dir="):
            plugins_dir = Path(arg.split("=", 1)[1])
        elif arg.startswith("-"):
            closed = closed or bool(words)  # the command's options: later words are its arguments
        elif not closed and len(words) < 2:
            words.append(arg)
    return words, plugins_dir


def _wants_plugin_commands(words: list[str]) -> bool:
    """Whether the command line may name a plugin's command: not a built-in one (whose start-up
    stays fast without loading plugins), or `tkit data` without a built-in data command."""
    if not words:
        return False
    if words[0] == "data":
        built_in = {c.name or c.callback.__name__.replace("_", "-") for c in data.app.registered_commands}  # type: ignore[union-attr]
        return len(words) == 1 or words[1] not in built_in
    return words[0] not in BUILTIN_COMMANDS


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `tkit` console script."""
    args = sys.argv[1:] if argv is None else argv
    words, plugins_dir = _command_and_plugins_dir(args)
    try:
        app = make_app(plugin_commands=_wants_plugin_commands(words), plugins_dir=plugins_dir)
    except Exception as exc:  # a broken plugin must not hide the built-in commands' help
        from translate_kit.errors import TranslateKitError

        if not isinstance(exc, TranslateKitError):
            raise
        typer.secho(f"Error: {exc}", fg="red", err=True)
        raise SystemExit(1) from None
    app(args=args, prog_name="tkit")
