"""`tkit recipes`: the recipes shipped with translate-kit, the project and plugins."""

from __future__ import annotations

import tomllib
from typing import Annotated

import typer
from rich.console import Console

from translate_kit.cli.common import cli_command, error_console, find_recipe, recipe_dirs, session

__all__ = ["app"]

app = typer.Typer(help="List and show recipes.", no_args_is_help=True)


def _description(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def _name(raw: dict, table: str, missing: str) -> str:
    body = raw.get(table)
    return str(body.get("name", missing)) if isinstance(body, dict) else missing


@app.command("list")
@cli_command
def list_recipes(ctx: typer.Context) -> None:
    """List recipes from ./recipes, translate-kit itself, and plugins."""
    from rich.table import Table  # here, not at import: `tkit --help` stays fast

    pm = session(ctx).pm
    table = Table(title="recipes")
    # Names, methods and generators are what users type: never fold them; the description (with
    # where the recipe comes from) takes what width is left.
    for column in ("name", "method", "generator"):
        table.add_column(column, no_wrap=True)
    table.add_column("description (from)", overflow="fold", ratio=1)
    for origin, folder in recipe_dirs(pm):
        for path in sorted(folder.glob("*.toml")):
            try:
                text = path.read_text(encoding="utf-8")
                raw = tomllib.loads(text)
            except (tomllib.TOMLDecodeError, UnicodeDecodeError):
                table.add_row(path.stem, "[red]invalid TOML[/]", "", f"{path} ({origin})")
                continue
            method = _name(raw, "method", "?")
            generator = _name(raw, "generator", "-")
            table.add_row(path.stem, method, generator, f"{_description(text)} [dim]({origin})[/]")
    Console().print(table)


@app.command("show")
@cli_command
def show_recipe(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Recipe name or file.")],
    resolved: Annotated[
        bool, typer.Option(help="Show every value after validation, defaults included, instead of the file.")
    ] = False,
) -> None:
    """Print a recipe: the file as written, or --resolved with every default filled in (components' too).

    The recipe is checked either way, as `tkit train` would check it: a misspelt key or option is an error.
    """
    from translate_kit.recipe import dump_toml, load_recipe

    state = session(ctx)
    path = find_recipe(name, state.pm)
    recipe = load_recipe(path, registry=state.registry)
    if resolved:
        text = f"# {path}, every value resolved\n" + dump_toml(recipe.with_defaults(state.registry))
    else:
        text = path.read_text(encoding="utf-8")
    console = Console()
    if console.is_terminal:
        from rich.syntax import Syntax  # pygments: imported only when highlighting

        error_console().print(f"[dim]{path}[/]")
        console.print(Syntax(text, "toml", theme="ansi_dark", background_color="default"))
    else:  # piped: the exact text, so `tkit recipes show x > mine.toml` gives a recipe
        typer.echo(text, nl=False)
