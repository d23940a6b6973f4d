"""One name per concept: every command spells an option of the same meaning the same way.

Users learn a flag once (`tkit translate ... --out DIR`) and reach for it everywhere
(`tkit export RUN --out model.onnx`). The walk covers every command, plugin commands included,
so a new command that says `--output` where the others say `--out` fails here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from translate_kit.cli import make_app

# Spellings of one concept. A command may use at most the first (visible) one; the others may
# only be hidden aliases kept for a release after a rename.
CONCEPTS: dict[str, tuple[str, ...]] = {
    "where results go": ("--out", "--output", "--output-dir", "--out-dir", "--outdir", "--dest", "--destination",
                         "--save-dir", "--root"),
    "where a run's data is read from": ("--data-root", "--data-dir", "--dataroot", "--data", "--dataset-root"),
    "recipe overrides": ("--set", "--override", "--overrides", "--config"),
    "compute device": ("--device", "--devices", "--gpu", "--gpus", "--gpu-ids"),
    "random seed": ("--seed", "--random-seed", "--rng-seed"),
    "replace existing results": ("--overwrite", "--force", "--clobber"),
    "figures as JSON": ("--json", "--json-out", "--json-path"),
    "use the weights' moving averages": ("--ema", "--use-ema"),
    "images per batch": ("--batch-size", "--batch", "--bs"),
}


def commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from commands(sub, (*path, name))
    else:
        yield " ".join(path), command


def option_names() -> dict[str, dict[str, bool]]:
    """command -> {long option name: hidden}."""
    root = typer.main.get_command(make_app(plugin_commands=True))
    found = {}
    for name, command in commands(root):
        found[name] = {
            spelling: bool(param.hidden)
            for param in command.params if getattr(param, "param_type_name", "") == "option"
            for spelling in (*param.opts, *param.secondary_opts) if spelling.startswith("--")
        }
    return found


def test_every_concept_has_one_visible_spelling_across_commands():
    found = option_names()
    assert {"train", "translate", "eval", "export", "data download"} <= set(found)
    problems = []
    for concept, (preferred, *others) in CONCEPTS.items():
        used = defaultdict(list)
        for command, names in found.items():
            for spelling in (preferred, *others):
                if spelling in names and not names[spelling]:
                    used[spelling].append(command)
        wrong = {spelling: where for spelling, where in used.items() if spelling != preferred}
        if wrong:
            problems.append(f"{concept}: use {preferred}, not " + "; ".join(
                f"{spelling} ({', '.join(where)})" for spelling, where in wrong.items()))
    assert not problems, "\n".join(problems)


def test_every_hidden_option_is_the_former_name_of_a_visible_one():
    """Hidden options exist only as aliases of a rename, never as a second, undocumented feature."""
    aliases = {spelling: preferred for preferred, *others in CONCEPTS.values() for spelling in others}
    for command, names in option_names().items():
        for spelling, hidden in names.items():
            if hidden:
                assert spelling in aliases and aliases[spelling] in names, (command, spelling)


@pytest.mark.parametrize("args", [["data", "download", "nosuchset"], ["data", "prepare-cityscapes", "nowhere"]])
def test_former_spelling_still_works_with_a_note_and_both_spellings_are_refused(args, tmp_path):
    runner = CliRunner()
    old = runner.invoke(make_app(), [*args, "--root", str(tmp_path)])
    new = runner.invoke(make_app(), [*args, "--out", str(tmp_path)])
    # Both reach the command (which then fails on the bad name or folder, in the same words).
    assert "--root is now --out" in old.output and "--root is now --out" not in new.output
    assert old.exit_code == new.exit_code == 1
    assert old.output.split("Error:")[1] == new.output.split("Error:")[1]
    both = runner.invoke(make_app(), [*args, "--out", str(tmp_path), "--root", str(tmp_path)])
    assert both.exit_code == 2 and "former name of --out" in both.output
