"""Temporal consistency of translated videos: flow warping, the warping error, and `tkit eval` on
sequences of frames.

An image model run on a video translates every frame on its own, so its outputs flicker; vid2vid
(Wang et al., "Video-to-Video Synthesis", NeurIPS 2018, https://arxiv.org/abs/1808.06601) carries
the previous outputs along the motion to avoid that. The warping error measures it: the mean
absolute difference between output frame t and output frame t-1 warped by the *ground-truth*
backward flow, on the pixels that frame t-1 shows (non-occluded). The real frames' own warping
error is the floor: what interpolation alone leaves.

**Flow convention** (the one of `translate_kit_plugins.video_data`): `flow[t]` is frame t's
backward flow in pixels of frame t's grid: the content at pixel p = (x, y) of frame t was at
p + flow[t](p) in frame t-1 (channel 0 is x, rightwards; channel 1 is y, downwards; pixel centres at
integer coordinates); `valid[t]` marks the pixels whose content frame t-1 shows; `flow[0]` is unused.

A data set of sequences meets `FrameSequences` (the `video_frames` dataset of the video plugin
does): the core reads its frame files and flows through that protocol, never through the plugin.
`evaluate_video` translates each test sequence with the model's own recurrence
(`Translator.translate_sequence`: vid2vid's, or an image model frame by frame) and reports the
warping error of the outputs and of the real frames, per-frame L1/MSE/PSNR/SSIM against the target
frames, and with a segmenter the per-frame FCN-score.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from translate_kit.errors import DataError, OptionError, RecipeError

__all__ = [
    "FrameSequences",
    "VideoReport",
    "evaluate_video",
    "flow_valid",
    "pixel_grid",
    "warp",
    "warping_error",
    "warping_error_sum",
]


# --- flow warping ---------------------------------------------------------------------------------


def pixel_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Pixel coordinates `(1, 2, H, W)`: channel 0 is x, channel 1 is y (pixel centres at integers)."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                            torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([xs, ys])[None]


def warp(image: torch.Tensor, flow: torch.Tensor, mode: Literal["bilinear", "nearest"] = "bilinear") -> torch.Tensor:
    """Backward warping: output pixel p takes `image` at p + flow(p) (bilinear, borders replicated).

    Args:
        image: `(B, C, H, W)`, e.g. frame t-1.
        flow: `(B, 2, H, W)` in pixels (x then y), e.g. frame t's backward flow.
        mode: interpolation of `grid_sample`.

    Returns:
        `(B, C, H, W)`: frame t, where the flow is right and the pixel is not occluded.

    Example:
        >>> image = torch.arange(6.0).view(1, 1, 2, 3)
        >>> warp(image, torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 2, 3)).tolist()
        [[[[1.0, 2.0, 2.0], [4.0, 5.0, 5.0]]]]
    """
    if image.ndim != 4 or flow.ndim != 4 or flow.shape[1] != 2 or image.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"Expected image (B, C, H, W) and flow (B, 2, H, W) of one size, got "
                         f"{tuple(image.shape)} and {tuple(flow.shape)}")
    height, width = image.shape[-2:]
    coords = pixel_grid(height, width, flow.device, flow.dtype) + flow
    # align_corners=True: -1 and +1 are the centres of the first and last pixels.
    gx = coords[:, 0] * (2 / max(width - 1, 1)) - 1
    gy = coords[:, 1] * (2 / max(height - 1, 1)) - 1
    grid = torch.stack([gx, gy], dim=-1).to(image.dtype)
    return F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=True)


def flow_valid(flow: torch.Tensor) -> torch.Tensor:
    """Where p + flow(p) lies inside the image, `(B, 1, H, W)` bool: the pixels whose content
    the previous frame shows (the others entered the view)."""
    height, width = flow.shape[-2:]
    coords = pixel_grid(height, width, flow.device, flow.dtype) + flow
    eps = 1e-3  # a point on the border up to rounding is inside
    inside = ((coords[:, 0] >= -eps) & (coords[:, 0] <= width - 1 + eps)
              & (coords[:, 1] >= -eps) & (coords[:, 1] <= height - 1 + eps))
    return inside[:, None]


def _warping_terms(
    frames: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed |frame t - warp(frame t-1, flow t)| over valid pixels and channels, and their count."""
    if frames.ndim == 4:
        frames, flow = frames[None], flow[None]
        valid = None if valid is None else valid[None]
    if frames.ndim != 5 or flow.shape[:2] != frames.shape[:2] or flow.shape[2] != 2 or frames.shape[1] < 2:
        raise ValueError(f"Expected frames (B, T, C, H, W) with T >= 2 and flow (B, T, 2, H, W), got "
                         f"{tuple(frames.shape)} and {tuple(flow.shape)}")
    later = frames[:, 1:].flatten(0, 1)
    earlier = frames[:, :-1].flatten(0, 1)
    if not later.is_floating_point():
        later, earlier = later.float(), earlier.float()
    f = flow[:, 1:].flatten(0, 1).to(later.dtype)
    mask = flow_valid(f) if valid is None else valid[:, 1:].flatten(0, 1).bool()
    diff = (later - warp(earlier, f)).abs() * mask
    return diff.sum(), mask.sum() * frames.shape[2]


def warping_error_sum(
    frames: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor | None = None
) -> tuple[float, int]:
    """The warping error's numerator and denominator: the summed |frame t - warp(frame t-1, flow t)|
    over valid pixels and channels of t = 1 .. T-1, and how many values that sums, so that sequences
    pool exactly (sum the numerators and the counts). Arguments as `warping_error`.
    """
    total, count = _warping_terms(frames, flow, valid)
    return float(total), int(count)


def warping_error(frames: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Temporal consistency: the mean absolute difference between frame t and frame t-1 warped by
    the ground-truth flow, on non-occluded pixels, over t = 1 .. T-1 (lower is steadier).

    A model that flickers changes pixels the camera motion does not explain, so its warping error
    exceeds that of the real video; the real frames' own error is the floor (interpolation).

    Args:
        frames: `(T, C, H, W)` or `(B, T, C, H, W)` (float32 or float64; integers are taken as
            float32). The error is in their units: report images in [0, 1] so the figure reads as a
            fraction of the range.
        flow: `(T, 2, H, W)` or `(B, T, 2, H, W)` backward flows (`flow[t]`: t -> t-1; `flow[0]` unused).
        valid: `(T, 1, H, W)` or `(B, T, 1, H, W)` bool; None: `flow_valid(flow)`.

    Returns:
        A scalar: the mean over every valid pixel, channel and frame pair.

    Example:
        >>> frames = torch.zeros(3, 1, 4, 4); frames[1] += 1  # a flash in frame 1
        >>> float(warping_error(frames, torch.zeros(3, 2, 4, 4)))
        1.0
    """
    total, count = _warping_terms(frames, flow, valid)
    if count == 0:
        raise ValueError("Expected some valid (non-occluded) pixels, got none")
    return total / count


# --- a data set of sequences ---------------------------------------------------------------------


@runtime_checkable
class FrameSequences(Protocol):
    """What `tkit eval` needs of a video data set (the `video_frames` dataset meets it).

    Attributes:
        sequences: per sequence, its name, its input frame files and its target frame files, in order
            (the stored sides: A then B; `direction` says which one the model translates from).
    """

    sequences: list[tuple[str, list[Path], list[Path]]]

    def flow_of(self, s: int) -> Mapping[str, torch.Tensor]:
        """Sequence s's ground-truth flow: `{"flow": float (T, 2, H, W), "valid": bool (T, 1, H, W)}`
        in the convention of the module docstring."""


def check_sequences(dataset: Any, what: str) -> FrameSequences:
    """`dataset` as `FrameSequences`, or a one-paragraph OptionError naming how to get a video set."""
    if isinstance(dataset, FrameSequences):
        if not getattr(dataset, "has_flow", True):
            raise DataError(f"{what} has no flow files (flow/<sequence>.pt), and the warping error needs the "
                            "ground-truth flow of every frame; add them (`tkit data synth-video DIR` writes a set "
                            "with exact flow) or evaluate without the temporal metric.")
        return dataset
    raise OptionError(
        f"The temporal-consistency metric scores sequences of frames, and {what} ({type(dataset).__name__}) is "
        "not a video data set (it has no `sequences` of frame files with a `flow_of` ground-truth flow). Name a "
        "video test set with --video-data ROOT (root/<split>/A/<sequence>/<frame>.png, B/..., flow/<sequence>.pt; "
        "`tkit data synth-video DIR` writes one), or leave out --temporal to score single images."
    )


# --- evaluation ---------------------------------------------------------------------------------


@dataclass
class VideoReport:
    """Every figure of a video evaluation; `to_dict()` is the `--json` file (keys in docs/metrics.md)."""

    checkpoint: str
    split: str
    mode: str
    sequences: int
    frames: int
    warping_error: dict[str, float]  # "generated" and "real" (the floor), images in [0, 1]
    pixel: dict[str, float]  # mean over every frame
    fcn: dict[str, Any] = field(default_factory=dict)
    per_sequence: list[dict[str, Any]] = field(default_factory=list)
    per_frame: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "split": self.split,
            "mode": self.mode,
            "kind": "video",
            "sequences": self.sequences,
            "frames": self.frames,
            "warping_error": self.warping_error,
            "pixel": self.pixel,
            "fcn": self.fcn,
            "per_sequence": self.per_sequence,
            "per_frame": self.per_frame,
        }


@torch.inference_mode()
def evaluate_video(
    translator: Any,
    dataset: Any,
    *,
    checkpoint: str,
    split: str,
    limit: int = 0,
    segmenter: Any | None = None,
    direction: str | None = None,
    on_sequence: Callable[[int], None] | None = None,
) -> VideoReport:
    """Translate every sequence of `dataset` with the model's recurrence and score it.

    Frames are read at their stored size (the flow's grid) and translated in order by
    `translator.translate_sequence` (vid2vid's recurrence from a generated first frame; an image
    model frame by frame). The warping error pools every valid pixel of every frame pair of every
    sequence (sum over sum), for the outputs and for the real target frames (the floor); the
    per-pixel metrics and the FCN-score are per frame, averaged over all frames.

    Args:
        translator: a `translate_kit.inference.Translator`.
        dataset: a `FrameSequences` (e.g. the `video_frames` dataset).
        checkpoint: what is evaluated, for the report.
        split: the split's name, for the report.
        limit: evaluate only the first N sequences; 0: all.
        segmenter: a Translator whose method is a `PixelClassifier` (labels -> photo models: the
            input frames are the label maps); None skips the FCN-score.
        direction: "AtoB" or "BtoA"; None: the dataset's `direction` attribute, else AtoB.
        on_sequence: called with the number of sequences done after each one.

    Raises:
        OptionError: `dataset` is not a data set of sequences.
        DataError: no sequence, a sequence of one frame, frames whose size differs from the flow's or
            from the outputs', a segmenter run that labels no pixels.
    """
    from translate_kit.data.io import read_image
    from translate_kit.eval.evaluate import _per_image_accuracy, _segment
    from translate_kit.eval.metrics import ConfusionMatrix, PixelMetrics
    from translate_kit.method import PixelClassifier

    source = check_sequences(dataset, f"the {split} split")
    direction = direction or getattr(dataset, "direction", "AtoB")
    if segmenter is not None and not isinstance(segmenter.method, PixelClassifier):
        raise RecipeError(f"{segmenter.checkpoint} is not a segmenter run: its method labels no pixels (it is not a "
                          "PixelClassifier). Train one with `tkit train fcn_facades`.")
    sequences = source.sequences[:limit] if limit else source.sequences
    if not sequences:
        raise DataError(f"The {split} split holds no sequence to evaluate.")
    pixel = PixelMetrics()
    palette = segmenter.method.palette if segmenter is not None else None
    if palette is not None:
        generated = ConfusionMatrix(palette.num_classes, class_names=palette.names)
        real = ConfusionMatrix(palette.num_classes, class_names=palette.names)
    totals = {"generated": [0.0, 0], "real": [0.0, 0]}
    per_sequence: list[dict[str, Any]] = []
    per_frame: list[dict[str, Any]] = []
    for s, (name, files_a, files_b) in enumerate(sequences):
        if len(files_a) < 2:
            raise DataError(f"Sequence {name} of the {split} split has {len(files_a)} frame; the warping error "
                            "needs at least 2 frames per sequence.")
        inputs = torch.stack([read_image(p) for p in files_a])
        targets = torch.stack([read_image(p) for p in files_b])
        if direction == "BtoA":
            inputs, targets = targets, inputs
        stored = source.flow_of(s)
        flow, valid = stored["flow"].float(), stored["valid"].bool()
        if tuple(flow.shape[-2:]) != tuple(targets.shape[-2:]) or len(flow) != len(targets):
            raise DataError(f"Sequence {name}: its flow is {tuple(flow.shape)} but its frames are "
                            f"{tuple(targets.shape)}; the flow must have one field per frame at the frames' size.")
        outputs = torch.stack(list(translator.translate_sequence(list(inputs))))
        if outputs.shape != targets.shape:
            raise DataError(f"Sequence {name}: the model's outputs are {tuple(outputs.shape[1:])} per frame and the "
                            f"target frames {tuple(targets.shape[1:])}; the warping error needs outputs on the "
                            "flow's grid (a model that keeps the size and the target's channels).")
        out01, real01 = outputs.double() / 255, targets.double() / 255
        row: dict[str, Any] = {"name": name, "frames": len(outputs)}
        for key, frames in (("generated", out01), ("real", real01)):
            total, count = warping_error_sum(frames, flow, valid)
            if count == 0:
                raise DataError(f"Sequence {name}: no pixel of its flow is valid (non-occluded), so it has no "
                                "warping error; check its flow file.")
            totals[key][0] += total
            totals[key][1] += count
            row["warping_error" if key == "generated" else "warping_error_real"] = total / count
        values = pixel.update(out01, real01, names=[f"{name}/{p.stem}" for p in files_a])
        frame_rows = [{"name": f"{name}/{p.stem}", **{k: v[t].item() for k, v in values.items()}}
                      for t, p in enumerate(files_a)]
        for key in ("l1", "mse", "psnr", "ssim"):
            row[key] = float(values[key].mean())
        if segmenter is not None:
            true = segmenter.method.decode_labels(inputs)
            predicted = _segment(segmenter, outputs)
            generated.update(predicted, true)
            real.update(_segment(segmenter, targets), true)
            accuracy = _per_image_accuracy(predicted, true)
            for frame_row, value in zip(frame_rows, accuracy):
                frame_row["fcn_pixel_accuracy"] = value
            row["fcn_pixel_accuracy"] = sum(accuracy) / len(accuracy)
        per_sequence.append(row)
        per_frame += frame_rows
        if on_sequence is not None:
            on_sequence(s + 1)
    fcn: dict[str, Any] = {}
    if segmenter is not None:
        fcn = {"generated": generated.compute().to_dict(), "ground_truth": real.compute().to_dict()}
    warping = {key: total / count for key, (total, count) in totals.items()}
    return VideoReport(checkpoint, split, translator.mode, len(per_sequence), len(per_frame), warping,
                       pixel.compute(), fcn, per_sequence, per_frame)


def video_rows(report: VideoReport) -> Sequence[tuple[str, float]]:
    """The headline figures as (heading, value) pairs, for the console table."""
    return [("warping error", report.warping_error["generated"]),
            ("warping error (real frames: floor)", report.warping_error["real"]),
            *((key, value) for key, value in report.pixel.items())]
