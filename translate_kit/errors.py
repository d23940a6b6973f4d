"""Exceptions that reach users.

Every error a user can cause (a misspelt recipe key, a missing folder, an unreadable image) is a
`TranslateKitError`. The CLI prints its message as one paragraph and exits with status 1, without a
traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CheckpointError",
    "DataError",
    "ExportError",
    "InferenceError",
    "OptionError",
    "PluginError",
    "RecipeError",
    "RunFolderError",
    "TrainingError",
    "TranslateKitError",
    "UnknownComponentError",
    "did_you_mean",
]


class TranslateKitError(Exception):
    """Root of the errors a user can cause and fix; the message says what failed and how to fix it."""


class RecipeError(TranslateKitError, ValueError):
    """A recipe (or a --set override) has an unknown table or key, or a value of the wrong type."""


class UnknownComponentError(TranslateKitError, LookupError):
    """A component name is not registered by any loaded plugin."""


class PluginError(TranslateKitError):
    """A plugin could not be loaded, or two plugins register the same name."""


class DataError(TranslateKitError):
    """A data folder is missing or empty, or an image cannot be read or used."""


class TrainingError(TranslateKitError):
    """Training cannot go on (e.g. the losses stayed non-finite); the last good checkpoint is kept."""


class CheckpointError(TranslateKitError):
    """A checkpoint or run folder is missing, corrupt, or not translate-kit's, or a checkpoint
    cannot be written (a full disk)."""


class RunFolderError(CheckpointError):
    """A run folder cannot be used: another process trains in it, or it would lose work."""


class InferenceError(TranslateKitError, ValueError):
    """An inference option does not fit the model (e.g. a tile size that is not a multiple of its
    `size_multiple`)."""


class ExportError(TranslateKitError):
    """The model cannot be exported as asked (a missing optional package, an untraceable network)."""


class OptionError(TranslateKitError, ValueError):
    """A command option has a value that cannot work (an empty list of batch sizes, zero windows)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return `" Did you mean 'x'?"` for the closest choice, or "" when none is close.

    Example:
        >>> did_you_mean("unet256", ["unet_256", "unet_128", "patchgan"])
        " Did you mean 'unet_256'?"
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
