"""`tkit features`: cluster a trained pix2pixHD's instance features per class, for editable outputs.

pix2pixHD (Wang et al., CVPR 2018, https://arxiv.org/abs/1711.11585, Sec. 3.4) trains an encoder E
whose output, averaged inside each instance, joins the label map at G's input. After training the
reference encodes every training image, keeps each instance's feature, and runs k-means (k = 10)
per class; at test time an instance takes one of its class's centres, so one label map gives
several outputs and a user can pick the look of each class. This plugin does the same:

1. `extract_features`: the run's training split resized to `data.crop_size` (an int, or
   [height, width], which `build_dataset` takes as it is; no crop, no flip), E's
   feature of every instance (every class, for data without instance maps) covering more than
   `min_area` of its image (the reference keeps instances over 1/64 of the image);
2. `kmeans` per class: Lloyd's algorithm from k-means++ seeds, the best of several restarts,
   all drawn from one seeded generator, so the centres are the same for the same seed;
3. the centres go to `RUN/feature_clusters.pt` (`FeatureClusters`, beside `checkpoints/`), which
   the `pix2pixhd` method reads when the run is loaded for translation.

Example:
    >>> points = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0], [5.0, 5.1]])
    >>> kmeans(points, 2, seed=0).round(decimals=3).tolist()  # the largest cluster first
    [[5.033, 5.033], [0.05, 0.0]]
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from translate_kit_plugins.pix2pixhd import CLUSTERS_FILE, FeatureClusters, Pix2PixHD

from translate_kit.api import (
    BatchSpec,
    OptionError,
    Translator,
    build_dataset,
    cli_command,
    hookimpl,
    load_recipe,
    read_model,
    session,
)

__all__ = ["cluster_features", "extract_features", "kmeans"]


# --- k-means ----------------------------------------------------------------------------------


def _plus_plus(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeds: the first uniformly, each next with probability proportional to the
    squared distance to the nearest seed so far."""
    first = int(torch.randint(len(points), (1,), generator=generator))
    seeds = [points[first]]
    nearest = (points - points[first]).square().sum(1)
    for _ in range(1, k):
        index = int(torch.multinomial(nearest, 1, generator=generator))
        seeds.append(points[index])
        nearest = torch.minimum(nearest, (points - points[index]).square().sum(1))
    return torch.stack(seeds)


def _lloyd(points: torch.Tensor, centres: torch.Tensor, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's iterations from `centres` until no point changes cluster; (centres, assignment)."""
    k = len(centres)
    assign = torch.cdist(points, centres).argmin(1)
    for _ in range(iterations):
        sizes = torch.bincount(assign, minlength=k)
        centres = points.new_zeros(centres.shape).index_add_(0, assign, points) / sizes.clamp_min(1)[:, None]
        for empty in (sizes == 0).nonzero().flatten().tolist():  # re-seed at the worst-served point
            far = (points - centres[assign]).square().sum(1).argmax()
            centres[empty] = points[far]
            assign[far] = empty
        moved = torch.cdist(points, centres).argmin(1)
        if torch.equal(moved, assign):
            break
        assign = moved
    return centres, assign


def kmeans(points: torch.Tensor, k: int, *, seed: int, restarts: int = 10, iterations: int = 300) -> torch.Tensor:
    """k-means centres of `points`, the same for the same seed.

    The best (lowest sum of squared distances) of `restarts` runs of Lloyd's algorithm from
    k-means++ seeds, drawn from one generator seeded with `seed`, in float64 on the CPU.

    Args:
        points: `(N, D)`.
        k: clusters wanted; fewer when the points have fewer distinct values.
        seed: seeds the generator.
        restarts: runs from different seeds (scikit-learn's former default, 10).
        iterations: at most this many Lloyd steps per run.

    Returns:
        `(min(k, distinct points), D)` float64 centres, the largest cluster first (ties by the
        centres' values), so cluster 0 is a class's most common look.

    Raises:
        ValueError: no points, or k < 1.
    """
    if points.ndim != 2 or len(points) == 0 or k < 1:
        raise ValueError(f"Expected points (N, D) with N >= 1 and k >= 1, got {tuple(points.shape)} and k {k}")
    x = points.detach().to("cpu", torch.float64)
    k = min(k, len(torch.unique(x, dim=0)))
    generator = torch.Generator().manual_seed(seed)
    best: tuple[float, torch.Tensor, torch.Tensor] | None = None
    for _ in range(restarts):
        centres, assign = _lloyd(x, _plus_plus(x, k, generator), iterations)
        inertia = float((x - centres[assign]).square().sum())
        if best is None or inertia < best[0]:
            best = (inertia, centres, assign)
    assert best is not None
    _, centres, assign = best
    sizes = torch.bincount(assign, minlength=k).tolist()
    order = sorted(range(k), key=lambda i: (-sizes[i], centres[i].tolist()))
    return centres[order]


# --- extraction and clustering ----------------------------------------------------------------


@torch.inference_mode()
def extract_features(
    method: Pix2PixHD, dataset: torch.utils.data.Dataset, *, device: torch.device, min_area: float = 1 / 64,
    on_item: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every instance's class and feature over `dataset`, one image at a time, whole (no crop, no flip).

    Args:
        method: a pix2pixhd model with a feature encoder, on `device`.
        dataset: the run's prepared dataset (items of the `label_maps` dataset).
        device: where to encode.
        min_area: instances covering at most this share of their image are left out (the
            reference keeps those over 1/64).
        on_item: called after each image.

    Returns:
        `(classes (N,) int64, features (N, feat_num) float32)`; unlabelled pixels form no instance.
    """
    if method.labels is None:
        raise ValueError("Expected a pix2pixhd model with label maps and a feature encoder")
    label_nc = method.labels.label_nc
    spec = BatchSpec(device=device, crop_size=None, flip=False, train=False)
    classes, features = [], []
    for index in range(len(dataset)):
        item = dataset[index]
        batch = {k: v[None] if isinstance(v, torch.Tensor) else [v] for k, v in item.items()}
        prepared = method.prepare_batch(batch, spec)
        found, feats, areas = method.instance_features(prepared)
        keep = (areas > min_area) & (found < label_nc)  # unlabelled pixels form no instance
        classes.append(found[keep].cpu())
        features.append(feats[keep].cpu())
        if on_item is not None:
            on_item()
    return torch.cat(classes), torch.cat(features)


def cluster_features(
    classes: torch.Tensor, features: torch.Tensor, label_nc: int, *, k: int = 10, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """k-means per class (`kmeans`, seeded with `seed` for every class).

    Returns:
        `(centres (label_nc, k, feat_num) float32, counts (label_nc,), instances (label_nc,))`:
        class c's first `counts[c]` rows are its centres (min(k, its distinct features)); the
        rest are zero. `instances` counts the features clustered per class.
    """
    centres = torch.zeros(label_nc, k, features.shape[1])
    counts = torch.zeros(label_nc, dtype=torch.int64)
    instances = torch.bincount(classes, minlength=label_nc)[:label_nc]
    for c in range(label_nc):
        points = features[classes == c]
        if len(points):
            found = kmeans(points, k, seed=seed)
            centres[c, : len(found)] = found.float()
            counts[c] = len(found)
    return centres, counts, instances


# --- the command ------------------------------------------------------------------------------


@cli_command
def features_command(
    ctx: typer.Context,
    run: Annotated[Path, typer.Argument(help="A pix2pixhd run with a feature encoder (its folder or a checkpoint).")],
    clusters: Annotated[int, typer.Option(min=1, help="k of the k-means, per class (the paper's 10).")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the k-means: the same seed gives the same centres.")] = 0,
    split: Annotated[
        Optional[str], typer.Option(help="The split to encode (default: the run's data.split).", show_default=False)
    ] = None,
    data_root: Annotated[
        Optional[Path], typer.Option(help="The data folder, if not the run's data.root.", show_default=False)
    ] = None,
    min_area: Annotated[
        float, typer.Option(help="Leave out instances covering at most this share of their image (reference: 1/64).")
    ] = 1 / 64,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
) -> None:
    """Cluster a pix2pixHD run's instance features per class (k-means) into RUN/feature_clusters.pt, so that
    `tkit translate` draws or picks (--option feature_cluster=N) a look per class."""
    registry = session(ctx).registry
    saved = read_model(run)
    if "E" not in saved.nets:
        raise OptionError(
            f"{saved.path} holds no feature encoder E: train a pix2pixhd recipe with an [encoder] table "
            "(recipes/pix2pixhd_facades_features.toml), and use a training checkpoint (an export keeps G only)."
        )
    # Not the run's clusters file: it is about to be made anew (and may be another run's).
    translator = Translator.from_checkpoint(run, device=device, registry=registry, run_files=False)
    method = translator.method
    if not isinstance(method, Pix2PixHD) or method.labels is None:
        raise OptionError(f"{saved.path}: expected a pix2pixhd run with label maps and a feature encoder, got method "
                          f"{type(method).__name__}.")
    recipe = translator.recipe
    if data_root is not None:
        recipe = load_recipe(recipe.to_dict(), [f'data.root="{data_root.as_posix()}"'], registry=registry)
    dataset = build_dataset(recipe, registry, split=split, load_size=recipe.data.crop_size, cache=False)
    classes, feats = extract_features(method, dataset, device=translator.device, min_area=min_area)
    if not len(classes):
        raise OptionError(f"No instance of the {len(dataset)} image(s) covers more than {min_area:g} of its image; "
                          "lower --min-area.")
    centres, counts, instances = cluster_features(classes, feats, method.labels.label_nc, k=clusters, seed=seed)
    file = Path(saved.path)
    run_dir = file.parent.parent if file.parent.name == "checkpoints" else file.parent
    FeatureClusters(centres, counts, method.labels.names, seed, str(file), int(saved.step or 0), instances).save(
        run_dir / CLUSTERS_FILE
    )
    per_class = ", ".join(f"{name} {n}" for name, n in zip(method.labels.names, counts.tolist()))
    typer.echo(
        f"Encoded {len(classes)} instance(s) of {len(dataset)} image(s) with {file.name}; clusters per class: "
        f"{per_class}. Wrote {run_dir / CLUSTERS_FILE}.\nTranslate with: tkit translate {run} INPUTS -o OUT "
        "--samples 4 (a centre drawn per class), or --option feature_cluster=0 / "
        f"--option feature_clusters={method.labels.names[0]}:1"
    )


@hookimpl
def translate_kit_add_commands(app: typer.Typer) -> None:
    app.command(name="features")(features_command)
