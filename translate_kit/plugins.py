"""The plugin manager: find plugins through entry points and check them against the hook specs.

Plugins are Python modules announced in the entry-point group `translate_kit`:

    [project.entry-points.translate_kit]
    my_unet = "my_package.my_unet"

translate-kit's own plugins (the U-Net, the PatchGAN, the pix2pix method, ...) are announced the
same way in its pyproject.toml. `TRANSLATE_KIT_DISABLE_PLUGINS=a,b` blocks plugins by entry-point
name before anything of theirs is imported.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pluggy

from translate_kit import hookspecs
from translate_kit.errors import PluginError

__all__ = ["DISABLE_ENV", "ENTRY_POINT_GROUP", "PluginInfo", "PluginManager", "disabled_plugins", "get_plugin_manager", "plugin_infos"]

ENTRY_POINT_GROUP = "translate_kit"
DISABLE_ENV = "TRANSLATE_KIT_DISABLE_PLUGINS"


def disabled_plugins() -> list[str]:
    """Plugin names listed, comma-separated, in `TRANSLATE_KIT_DISABLE_PLUGINS`."""
    return [name.strip() for name in os.environ.get(DISABLE_ENV, "").split(",") if name.strip()]


class PluginManager(pluggy.PluginManager):
    """pluggy's manager with translate-kit's hook specs, remembering each plugin's distribution."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.distributions: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)

    def load_entry_points(self, group: str, distributions: Iterable[str] | None = None) -> None:
        """Import and register every entry point of `group` that is not blocked or loaded already
        (of the named distributions only, when `distributions` is given)."""
        wanted = None if distributions is None else {_normalise(d) for d in distributions}
        for dist in importlib.metadata.distributions():
            if wanted is not None and _normalise(dist.metadata["name"] or "") not in wanted:
                continue
            for entry_point in dist.entry_points:
                if entry_point.group != group:
                    continue
                if self.is_blocked(entry_point.name) or self.get_plugin(entry_point.name) is not None:
                    continue
                dist_name = dist.metadata["name"]
                try:
                    plugin = entry_point.load()
                except Exception as exc:  # noqa: BLE001 - a broken third-party plugin must not read as our bug
                    raise PluginError(
                        f"Plugin {entry_point.name!r} ({entry_point.value}, from distribution {dist_name} "
                        f"{dist.version}) failed to import: {type(exc).__name__}: {exc}. Fix or uninstall that "
                        f"package, or disable the plugin with {DISABLE_ENV}={entry_point.name}."
                    ) from exc
                self.register(plugin, name=entry_point.name)
                self.distributions[entry_point.name] = (dist_name, dist.version)


def _normalise(distribution: str) -> str:
    return distribution.lower().replace("_", "-").replace(".", "-")


def get_plugin_manager(
    *,
    autoload: bool = True,
    plugins_dir: Path | str | None = None,
    plugins: Iterable[object] = (),
    disabled: Iterable[str] | None = None,
    distributions: Iterable[str] | None = None,
) -> PluginManager:
    """Make a plugin manager with the hook specs and the plugins found.

    Args:
        autoload: load the entry points of group `translate_kit` (translate-kit's own plugins
            included). Tests pass False and register exactly what they need.
        plugins_dir: also load every `*.py` module in this folder as a plugin (named by file stem).
        plugins: extra plugin objects or modules to register; one that an entry point already
            registered (an installed plugin a test also names) is not registered twice.
        disabled: names to block; default: `TRANSLATE_KIT_DISABLE_PLUGINS`.
        distributions: with `autoload`, load the entry points of these distributions only
            (`["translate-kit"]`: the first-party plugins, whatever else is installed).

    Raises:
        PluginError: an entry point fails to import, or a plugin implements an unknown hook.
    """
    pm = PluginManager()
    for name in disabled_plugins() if disabled is None else disabled:
        pm.set_blocked(name)
    if autoload:
        pm.load_entry_points(ENTRY_POINT_GROUP, distributions)
    if plugins_dir is not None:
        for name, module in _load_folder(Path(plugins_dir), skip=pm.is_blocked):
            pm.register(module, name=name)
    for plugin in plugins:
        if not pm.is_registered(plugin):
            pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"{exc}. Hook names start with 'translate_kit_'; see docs/plugins.md for the list."
        ) from None
    return pm


_PLUGINS_DIR_PACKAGE = "translate_kit_plugins_dir"


def _plugins_dir_package() -> None:
    """An empty parent package for --plugins-dir modules, so `pickle` can import them by name."""
    if _PLUGINS_DIR_PACKAGE not in sys.modules:
        package = types.ModuleType(_PLUGINS_DIR_PACKAGE, "Modules loaded with --plugins-dir.")
        package.__path__ = []
        sys.modules[_PLUGINS_DIR_PACKAGE] = package


def _load_folder(folder: Path, skip: Callable[[str], bool]) -> list[tuple[str, object]]:
    """Import each `*.py` in `folder` (not those `skip` names) as plugin `<stem>`."""
    if not folder.is_dir():
        raise PluginError(f"Plugins folder {folder} does not exist; pass an existing folder of *.py plugin modules.")
    modules = []
    for path in sorted(folder.glob("*.py")):
        if skip(path.stem):
            continue
        # A private module name: a plugin file called json.py must not shadow the standard library.
        module_name = f"{_PLUGINS_DIR_PACKAGE}.{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        _plugins_dir_package()
        sys.modules[module_name] = module  # so pickling and `inspect` find it, as for an imported module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001
            sys.modules.pop(module_name, None)
            raise PluginError(f"Plugin module {path} failed to import: {type(exc).__name__}: {exc}") from exc
        modules.append((path.stem, module))
    return modules


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """What `tkit plugins list` shows of one plugin."""

    name: str
    distribution: str  # "" when the plugin did not come from an installed distribution
    version: str
    module: str


def plugin_infos(pm: PluginManager) -> list[PluginInfo]:
    """Every registered plugin with the distribution and version it came from."""
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist_name, version = pm.distributions.get(name, ("", ""))
        module = getattr(plugin, "__name__", type(plugin).__name__)
        infos.append(PluginInfo(name=name, distribution=dist_name, version=version, module=module))
    return sorted(infos, key=lambda info: info.name)
