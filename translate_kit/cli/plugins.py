"""`tkit plugins`: what is installed and what each plugin adds."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from translate_kit.cli.common import cli_command, session

__all__ = ["app"]

app = typer.Typer(help="Inspect the installed plugins.", no_args_is_help=True)


@app.command("list")
@cli_command
def list_plugins(ctx: typer.Context) -> None:
    """Show each plugin, its distribution and version, and the components and commands it adds."""
    from translate_kit.plugins import DISABLE_ENV, disabled_plugins, plugin_infos

    state = session(ctx)
    pm, registry = state.pm, state.registry
    by_plugin: dict[str, list[str]] = {}
    for spec in registry.specs():
        by_plugin.setdefault(spec.plugin, []).append(f"{spec.kind}:{spec.name}")
    commands = _commands_by_plugin(pm)
    table = Table(title="translate-kit plugins", show_lines=True)
    for column in ("plugin", "distribution", "version", "adds"):
        table.add_column(column, overflow="fold")
    for info in plugin_infos(pm):
        adds = by_plugin.get(info.name, []) + [f"command:{c}" for c in commands.get(info.name, [])]
        table.add_row(info.name, info.distribution or f"({info.module})", info.version, ", ".join(adds) or "-")
    console = Console()
    console.print(table)
    blocked = disabled_plugins()
    if blocked:
        console.print(f"Disabled by {DISABLE_ENV}: {', '.join(blocked)}")


def _commands_by_plugin(pm: object) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for impl in pm.hook.translate_kit_add_commands.get_hookimpls():  # type: ignore[attr-defined]
        probe = typer.Typer()
        impl.function(app=probe)
        names = [c.name or c.callback.__name__ for c in probe.registered_commands]  # type: ignore[union-attr]
        names += [g.name or "?" for g in probe.registered_groups]
        found.setdefault(impl.plugin_name, []).extend(names)
    for impl in pm.hook.translate_kit_add_data_commands.get_hookimpls():  # type: ignore[attr-defined]
        probe = typer.Typer()
        impl.function(data=probe)
        found.setdefault(impl.plugin_name, []).extend(
            f"data {c.name or c.callback.__name__}" for c in probe.registered_commands  # type: ignore[union-attr]
        )
    return found
