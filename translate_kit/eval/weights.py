"""Published weight files for measuring networks (FID's Inception, LPIPS's AlexNet): found on local
paths only, read without running code, checked tensor by tensor.

Metrics that need a pretrained network (`translate_kit.eval.fid`, `translate_kit.eval.lpips`) never
download anything: the user downloads the published file once and names it with a command option or
an environment variable. Every error here is one paragraph that names the file, says where it came
from (the option, the variable, the recipe) and ends with the metric's own "how to get it" sentence.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from translate_kit.errors import CheckpointError, OptionError

__all__ = ["check_tensors", "locate_weights", "read_state_dict", "sha256"]

PathLike = str | os.PathLike[str]


def locate_weights(
    candidates: Iterable[tuple[PathLike | None, str]],
    *,
    what: str,
    how_to_get: str,
    kind: Literal["file", "folder"] = "file",
) -> Path:
    """The first candidate that is set, which must exist.

    Args:
        candidates: `(value, source)` pairs in order of precedence, e.g. `(path, "given")`,
            `(os.environ.get(VAR), f"from {VAR}")`; None or "" is not set.
        what: what is looked for, for messages ("FID weights file").
        how_to_get: the sentence that says where to download it and how to name it.
        kind: whether the path must be a file or a folder.

    Raises:
        OptionError: no candidate is set.
        CheckpointError: the first set one does not exist (or is not a `kind`).
    """
    for value, source in candidates:
        if value:
            path = Path(value).expanduser()
            if not (path.is_file() if kind == "file" else path.is_dir()):
                missing = "does not exist" if not path.exists() else f"is not a {kind}"
                raise CheckpointError(f"The {what} {path} ({source}) {missing}. {how_to_get}")
            return path
    raise OptionError(f"No {what} was given. {how_to_get}")


def read_state_dict(file: Path, *, how_to_get: str) -> Mapping[str, Any]:
    """`torch.load(file, weights_only=True)`, which must give a mapping.

    Raises:
        CheckpointError: the file cannot be read as PyTorch weights, or holds something else.
    """
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many kinds (unpickling, zip, EOF) for a file it cannot read
        # Not torch's message: it suggests weights_only=False, which would run code from the file.
        raise CheckpointError(
            f"{file} cannot be read as PyTorch weights ({type(exc).__name__}): it is another kind of file, or a "
            f"damaged one (an interrupted download?). {how_to_get}"
        ) from None
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{file} holds a {type(state).__name__}, not a state dict of tensors. {how_to_get}")
    return state


def check_tensors(
    state: Mapping[str, Any],
    expected: Mapping[str, torch.Tensor],
    file: Path | None,
    *,
    what: str,
    layout: str,
    how_to_get: str,
    ignore: Callable[[str], bool] = lambda name: False,
) -> None:
    """Raise CheckpointError unless `state` has exactly the tensor names and shapes of `expected`.

    Args:
        state: what the file holds.
        expected: the network's own `state_dict()` (names as the file must spell them).
        file: the file, for the message.
        what: what the file should be ("the FID Inception weights file").
        layout: whose tensors it must hold ("torchvision's Inception3(...) with pytorch-fid's names").
        how_to_get: see `locate_weights`.
        ignore: names left out on both sides (counters files differ in, heads never run).
    """

    def shapes(tensors: Mapping[str, Any]) -> dict[str, tuple[int, ...] | None]:
        return {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in tensors.items()
                if not ignore(str(k))}

    want, have = shapes(expected), shapes(state)
    missing = [k for k in want if k not in have]
    unexpected = [str(k) for k in have if k not in want]
    wrong = [f"{k} is {'x'.join(map(str, have[k] or ())) or 'not a tensor'}, expected {'x'.join(map(str, want[k] or ()))}"
             for k in want if k in have and have[k] != want[k]]
    if not (missing or unexpected or wrong):
        return
    problems = []
    for items, kind in ((missing, "missing"), (unexpected, "unexpected"), (wrong, "of another shape")):
        if items:
            problems.append(f"{len(items)} tensors {kind} (e.g. {'; '.join(items[:3])})")
    raise CheckpointError(
        f"{file} is not {what}: {', '.join(problems)}. It must hold the {len(want)} tensors of {layout}. {how_to_get}"
    )


def sha256(file: Path) -> str:
    """The file's SHA-256, hex; recorded with every score so that a figure names its weights."""
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
