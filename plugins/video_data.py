"""Video data for video-to-video translation (vid2vid, Wang et al., NeurIPS 2018,
https://arxiv.org/abs/1808.06601): frame-sequence folders, clips with one jitter for every frame,
optical flow (warping, composing, the warping-error metric), mp4 files, and a synthetic video set
with exact ground-truth flow (`tkit data synth-video`).

Layout of a video data set (`video_frames` dataset):

    root/<split>/A/<sequence>/<frame>.png     input frames (label maps for vid2vid), natural order
    root/<split>/B/<sequence>/<frame>.png     target frames, the same names
    root/<split>/flow/<sequence>.pt           optional: {"flow": float32 (T, 2, H, W),
                                              "valid": bool (T, 1, H, W)}

**Flow convention** (one for the whole family): `flow[t]` is the *backward* flow of frame t, in
pixels of frame t's grid: the content at pixel p = (x, y) of frame t was at p + flow[t](p) in
frame t-1 (channel 0: x, to the right; channel 1: y, downwards; pixel centres at integer
coordinates). So `warp(frame[t-1], flow[t])` reproduces frame t where `valid[t]` is true, and
`valid[t]` is false where the content is new (it entered the view at a border). `flow[0]` is
zero and `valid[0]` false: frame 0 has no predecessor.

The synthetic set films a still picture with a virtual camera (pan, zoom, small rotation): frame t
shows source point `S_t(p) = c_t + z_t R(theta_t) (p - p0)` at pixel p, so the flow is
`S_{t-1}^{-1}(S_t(p)) - p`, exact up to float rounding; pixels whose predecessor lies outside the
previous frame are the border occlusions. Rendering and warping both interpolate bilinearly, so
warping a photo frame reproduces the next one up to interpolation error, and a linear ramp exactly
(tests/test_video_data.py checks both).

mp4 files go through PyAV (FFmpeg's decoders and encoders; the `video` extra:
`pip install translate-kit[video]`), imported only where a video file is read or written.
"""

from __future__ import annotations

import math
import random
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
import typer
from torch.utils.data import Dataset

from translate_kit.api import (
    BatchSpec,
    DataError,
    cli_command,
    flow_valid,
    hookimpl,
    list_images,
    pixel_grid,
    read_image,
    read_video,
    register_dataset,
    render_facade,
    to_unit_range,
    warp,
    warping_error,
    write_video,
)

__all__ = [
    "ClipJitter",
    "VideoFramesDataset",
    "camera_flow",
    "camera_path",
    "compose_flow",
    "flow_valid",
    "read_video",
    "render_view",
    "resize_flow",
    "synth_video_sequence",
    "video_frames",
    "warp",
    "warping_error",
    "write_synth_video",
    "write_video",
]

FLOW_DIR = "flow"


# --- flow ---------------------------------------------------------------------------------------


# warp, flow_valid, warping_error and pixel_grid live in the core (translate_kit.eval.temporal), which
# `tkit eval` uses for the temporal-consistency metric; they are re-exported here under the same names.


def compose_flow(later: torch.Tensor, earlier: torch.Tensor) -> torch.Tensor:
    """The backward flow over two steps: from frame t to t-2, given frame t's (`later`, t -> t-1)
    and frame t-1's (`earlier`, t-1 -> t-2): `later(p) + earlier(p + later(p))`.

    Example:
        >>> one = torch.ones(1, 2, 3, 3)
        >>> compose_flow(one, one)[0, :, 1, 1].tolist()
        [2.0, 2.0]
    """
    return later + warp(earlier, later)


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A flow field `(B, 2, H, W)` resized to `size` (height, width): interpolated, and its
    vectors scaled by the change of pixel pitch (align_corners geometry, as `warp` uses)."""
    height, width = flow.shape[-2:]
    if (height, width) == tuple(size):
        return flow
    out = F.interpolate(flow, size=size, mode="bilinear", align_corners=True)
    sx = (size[1] - 1) / max(width - 1, 1)
    sy = (size[0] - 1) / max(height - 1, 1)
    return out * torch.tensor([sx, sy], dtype=out.dtype, device=out.device).view(1, 2, 1, 1)


# --- the virtual camera ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CameraPose:
    """Where the camera looks: the source point at the frame's centre, the zoom (source pixels
    per frame pixel) and the rotation (radians)."""

    cx: float
    cy: float
    zoom: float
    angle: float

    def matrix(self, size: int) -> torch.Tensor:
        """`(2, 3)` float64: frame pixel (x, y, 1) -> source point."""
        half = (size - 1) / 2
        c, s = math.cos(self.angle) * self.zoom, math.sin(self.angle) * self.zoom
        return torch.tensor([[c, -s, self.cx - c * half + s * half], [s, c, self.cy - s * half - c * half]],
                            dtype=torch.float64)


def camera_path(frames: int, size: int, source_size: tuple[int, int], seed: int, *,
                pan: float = 1.5, zoom_rate: float = 0.015, spin: float = 0.006) -> list[CameraPose]:
    """A random camera path over a source picture: a pan, a zoom and a rotation drift that bounce
    back at the picture's edges, so every frame shows only the picture.

    Args:
        frames: poses to make.
        size: frame side in pixels.
        source_size: (height, width) of the picture.
        seed: the path's seed.
        pan: largest pan speed, source pixels per frame.
        zoom_rate: largest relative zoom change per frame.
        spin: largest rotation per frame, radians (0.006: about 1/3 degree).
    """
    rng = random.Random(seed)
    height, width = source_size
    limit = (min(height, width) - 1) / ((size - 1) * math.sqrt(2))  # a window of any angle fits
    zoom = rng.uniform(0.55, 0.85) * limit
    angle = rng.uniform(-0.05, 0.05)
    vx, vy = rng.uniform(-pan, pan), rng.uniform(-pan, pan)
    vz, va = rng.uniform(-zoom_rate, zoom_rate), rng.uniform(-spin, spin)
    cx, cy = rng.uniform(0.4, 0.6) * (width - 1), rng.uniform(0.4, 0.6) * (height - 1)
    poses = []
    for _ in range(frames):
        half = zoom * (size - 1) / 2 * (abs(math.cos(angle)) + abs(math.sin(angle)))
        cx, vx = _bounce(cx, vx, half, width - 1 - half)
        cy, vy = _bounce(cy, vy, half, height - 1 - half)
        poses.append(CameraPose(cx, cy, zoom, angle))
        cx, cy, angle = cx + vx, cy + vy, max(-0.15, min(0.15, angle + va))
        zoom *= 1 + vz
        if not 0.35 * limit <= zoom <= 0.95 * limit:
            vz = -vz
            zoom = min(max(zoom, 0.35 * limit), 0.95 * limit)
    return poses


def _bounce(value: float, velocity: float, low: float, high: float) -> tuple[float, float]:
    if value < low:
        return low, abs(velocity)
    if value > high:
        return high, -abs(velocity)
    return value, velocity


def render_view(
    source: torch.Tensor, pose: CameraPose, size: int, mode: Literal["bilinear", "nearest"]
) -> torch.Tensor:
    """The camera's frame of a picture `(C, H, W)` (uint8 or float): `(C, size, size)` of its dtype."""
    height, width = source.shape[-2:]
    grid_xy = pixel_grid(size, size, torch.device("cpu"), torch.float64)[0].flatten(1)  # (2, N)
    m = pose.matrix(size)
    src = m[:, :2] @ grid_xy + m[:, 2:]
    grid = torch.stack([src[0] * (2 / (width - 1)) - 1, src[1] * (2 / (height - 1)) - 1], -1)
    grid = grid.view(1, size, size, 2).float()
    out = F.grid_sample(source[None].float(), grid, mode=mode, padding_mode="border", align_corners=True)[0]
    return out.round().clamp(0, 255).to(torch.uint8) if source.dtype == torch.uint8 else out


def camera_flow(previous: CameraPose, current: CameraPose, size: int) -> torch.Tensor:
    """The exact backward flow `(2, size, size)` float32 from the frame at `current` to the one at
    `previous`: `M_prev^-1 (M_cur p) - p`, computed in float64."""
    grid_xy = pixel_grid(size, size, torch.device("cpu"), torch.float64)[0].flatten(1)
    m_cur, m_prev = current.matrix(size), previous.matrix(size)
    src = m_cur[:, :2] @ grid_xy + m_cur[:, 2:]
    q = torch.linalg.solve(m_prev[:, :2], src - m_prev[:, 2:])
    return (q - grid_xy).view(2, size, size).float()


def synth_video_sequence(photo: torch.Tensor, labels: torch.Tensor, *, frames: int, size: int,
                         seed: int) -> dict[str, torch.Tensor]:
    """Film a photo and its label map with one random camera path.

    Args:
        photo: uint8 `(3, H, W)`.
        labels: uint8 `(3, H, W)` colour label map of the same size (sampled by nearest neighbour,
            so every pixel keeps a label colour).
        frames: frames to make.
        size: frame side in pixels.
        seed: the camera path's seed.

    Returns:
        `{"A": labels (T, 3, size, size) uint8, "B": photos, "flow": (T, 2, size, size) float32,
        "valid": (T, 1, size, size) bool}`, flow and valid as the module docstring defines them.
    """
    if photo.shape != labels.shape:
        raise ValueError(f"Expected photo and labels of one shape, got {tuple(photo.shape)} and {tuple(labels.shape)}")
    poses = camera_path(frames, size, tuple(photo.shape[-2:]), seed)
    a = torch.stack([render_view(labels, p, size, "nearest") for p in poses])
    b = torch.stack([render_view(photo, p, size, "bilinear") for p in poses])
    flow = torch.zeros(frames, 2, size, size)
    for t in range(1, frames):
        flow[t] = camera_flow(poses[t - 1], poses[t], size)
    valid = flow_valid(flow)
    valid[0] = False
    return {"A": a, "B": b, "flow": flow, "valid": valid}


def _source_side(size: int) -> int:
    return max(32, round(size * 1.6))


def _antialiased(image: torch.Tensor, side: int) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    return TF.resize(image, [side, side], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)


def _nearest(labels: torch.Tensor, side: int) -> torch.Tensor:
    return F.interpolate(labels[None].float(), size=(side, side), mode="nearest-exact")[0].to(torch.uint8)


def _facades_pairs(folder: Path) -> list[Path]:
    return list_images(folder, what="facades A|B pairs")


def write_synth_video(
    root: Path,
    *,
    sequences: Mapping[str, int] | None = None,
    frames: int = 12,
    size: int = 64,
    source: Literal["both", "facades", "synthetic"] = "both",
    facades: Path | None = None,
    seed: int = 0,
    overwrite: bool = False,
    on_sequence: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Write a synthetic video set in the `video_frames` layout (labels in A, photos in B, flow).

    Sequences alternate between real facades pairs (photo | label map jpgs, the pix2pix layout,
    from `facades/<split>/`) and synthetic facades (`render_facade`), each filmed along its own
    camera path.

    Args:
        root: folder to write `<split>/{A,B,flow}` into.
        sequences: sequences per split (default train 8, test 2).
        frames: frames per sequence.
        size: frame side in pixels.
        source: "both" (alternate), "facades" (real pairs only) or "synthetic".
        facades: the pix2pix facades folder (needed unless source is "synthetic").
        seed: the same seed gives the same videos.
        overwrite: replace an existing split folder.
        on_sequence: called after each sequence is written.

    Returns:
        Sequences written per split.

    Raises:
        DataError: a split folder exists (without `overwrite`), or the facades folder is missing.
    """
    from torchvision.io import write_png

    sequences = dict(sequences or {"train": 8, "test": 2})
    if frames < 2 or size < 32 or min(sequences.values(), default=0) < 1:
        raise DataError(f"Expected frames >= 2, size >= 32 and at least one sequence per split, got frames {frames}, "
                        f"size {size}, sequences {sequences}.")
    root = Path(root)
    for split in sequences:
        if (root / split).exists():
            if not overwrite:
                raise DataError(f"{root / split} exists; pass --overwrite to replace it, or choose another folder.")
            shutil.rmtree(root / split)
    pairs: dict[str, list[Path]] = {}
    if source != "synthetic":
        if facades is None or not Path(facades).is_dir():
            raise DataError(f"The facades folder {facades} is missing; give --facades DIR (the pix2pix facades with "
                            "train/ and test/ of A|B jpgs) or --source synthetic.")
        for split in sequences:
            folder = Path(facades) / split
            pairs[split] = _facades_pairs(folder if folder.is_dir() else Path(facades) / "train")
    counts = {}
    for s, (split, count) in enumerate(sequences.items()):
        for i in range(count):
            seq_seed = seed * 1_000_003 + s * 10_007 + i
            real = source == "facades" or (source == "both" and i % 2 == 0)
            # The picture is brought to about 1.6x the frame side first (antialiased), so the camera
            # magnifies slightly rather than minifies: minifying with bilinear sampling aliases, and
            # the frames would flicker by themselves.
            side = _source_side(size)
            if real:
                files = pairs[split]
                image = read_image(files[(seed + i // (2 if source == "both" else 1)) % len(files)])
                half = image.shape[-1] // 2
                photo = _antialiased(image[:3, :, :half], side)
                labels = _nearest(image[:3, :, image.shape[-1] - half:], side)
                name = f"facades_{i:03d}"
            else:
                photo, labels = render_facade(seq_seed, side)
                name = f"synth_{i:03d}"
            clip = synth_video_sequence(photo, labels, frames=frames, size=size, seed=seq_seed)
            for side in ("A", "B"):
                folder = root / split / side / name
                folder.mkdir(parents=True, exist_ok=True)
                for t in range(frames):
                    write_png(clip[side][t].contiguous(), str(folder / f"{t:05d}.png"))
            (root / split / FLOW_DIR).mkdir(parents=True, exist_ok=True)
            torch.save({"flow": clip["flow"], "valid": clip["valid"]}, root / split / FLOW_DIR / f"{name}.pt")
            if on_sequence is not None:
                on_sequence()
        counts[split] = count
    return counts


# --- video files ------------------------------------------------------------------------------


# read_video and write_video are the core's (translate_kit.data.video), re-exported here.


# --- the dataset ------------------------------------------------------------------------------


class VideoFramesDataset(Dataset):
    """Clips of `clip_length` consecutive frames from frame-sequence folders (module docstring).

    Item i is `{"A": uint8 (T, C, H, W), "B": ..., "name": "<sequence>/<first frame>"}`, plus
    `"flow"` float32 `(T, 2, H, W)` and `"valid"` uint8 `(T, 1, H, W)` when the split has flow
    files; the clip's first frame has zero flow and no valid pixel (its predecessor is not in the
    clip). Clips start every `clip_stride` frames of every sequence; the order is fixed, so the
    trainer's sampler alone decides which clip a step sees (exact resume).

    Attributes:
        sequences: per sequence, its name and its (A, B) frame files.
    """

    def __init__(self, folder: Path, *, clip_length: int, clip_stride: int = 1,
                 direction: Literal["AtoB", "BtoA"] = "AtoB") -> None:
        folder = Path(folder)
        if clip_length < 1 or clip_stride < 1:
            raise DataError(f"Expected clip_length >= 1 and clip_stride >= 1, got {clip_length} and {clip_stride}.")
        if not (folder / "A").is_dir() or not (folder / "B").is_dir():
            raise DataError(f"{folder} has no A/ and B/ folders of frame sequences (A/<sequence>/<frame>.png); "
                            "make a synthetic set with `tkit data synth-video DIR`.")
        self.folder, self.direction, self.clip_length = folder, direction, clip_length
        self.sequences: list[tuple[str, list[Path], list[Path]]] = []
        for seq in sorted(p for p in (folder / "A").iterdir() if p.is_dir()):
            frames_a = list_images(seq)
            frames_b = list_images(folder / "B" / seq.name) if (folder / "B" / seq.name).is_dir() else []
            if [p.stem for p in frames_a] != [p.stem for p in frames_b]:
                raise DataError(f"Sequence {seq.name}: the frames in A/ and B/ differ ({len(frames_a)} and "
                                f"{len(frames_b)} files, matched by name); every A frame needs its B frame.")
            self.sequences.append((seq.name, frames_a, frames_b))
        if not self.sequences:
            raise DataError(f"{folder / 'A'} holds no sequence folder.")
        flows = [folder / FLOW_DIR / f"{name}.pt" for name, _, _ in self.sequences]
        present = [p.is_file() for p in flows]
        if any(present) and not all(present):
            missing = [p.name for p, ok in zip(flows, present) if not ok]
            raise DataError(f"{folder / FLOW_DIR} has flow for some sequences only (missing: {', '.join(missing[:5])});"
                            " give every sequence its flow file, or none.")
        self.has_flow = all(present)
        self.clips = [(s, start) for s, (_, frames_a, _) in enumerate(self.sequences)
                      for start in range(0, len(frames_a) - clip_length + 1, clip_stride)]
        if not self.clips:
            longest = max(len(f) for _, f, _ in self.sequences)
            raise DataError(f"No sequence in {folder} has {clip_length} frames (the longest has {longest}); lower "
                            "data clip_length.")
        self._flow_cache: dict[int, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.clips)

    def flow_of(self, s: int) -> dict[str, torch.Tensor]:
        """Sequence s's stored flow `{"flow", "valid"}`, checked."""
        if s not in self._flow_cache:
            name, frames, _ = self.sequences[s]
            path = self.folder / FLOW_DIR / f"{name}.pt"
            stored = torch.load(path, weights_only=True)
            flow, valid = stored.get("flow"), stored.get("valid")
            if not isinstance(flow, torch.Tensor) or flow.ndim != 4 or flow.shape[:2] != (len(frames), 2):
                raise DataError(f"{path}: expected 'flow' of shape ({len(frames)}, 2, H, W), got "
                                f"{getattr(flow, 'shape', type(flow).__name__)}.")
            if valid is None:
                valid = flow_valid(flow)
            self._flow_cache[s] = {"flow": flow.float(), "valid": valid.bool()}
        return self._flow_cache[s]

    def __getitem__(self, index: int) -> dict[str, Any]:
        s, start = self.clips[index]
        name, frames_a, frames_b = self.sequences[s]
        span = slice(start, start + self.clip_length)
        a = torch.stack([read_image(p) for p in frames_a[span]])
        b = torch.stack([read_image(p) for p in frames_b[span]])
        if self.direction == "BtoA":
            a, b = b, a
        item: dict[str, Any] = {"A": a, "B": b, "name": f"{name}/{frames_a[start].stem}"}
        if self.has_flow:
            stored = self.flow_of(s)
            flow, valid = stored["flow"][span].clone(), stored["valid"][span].clone()
            flow[0], valid[0] = 0, False  # the clip's first frame: its predecessor is not in the clip
            item["flow"], item["valid"] = flow, valid.to(torch.uint8)
        return item


@register_dataset()
def video_frames(*, root: str, split: str = "train", clip_length: int = 4, clip_stride: int = 1,
                 direction: Literal["AtoB", "BtoA"] = "AtoB") -> VideoFramesDataset:
    """Clips of consecutive frames from root/<split>/{A,B}/<sequence>/ (+ flow/<sequence>.pt); see
    translate_kit_plugins.video_data. clip_length is the longest clip a method trains on."""
    return VideoFramesDataset(Path(root) / split, clip_length=clip_length, clip_stride=clip_stride,
                              direction=direction)


# --- clip jitter ------------------------------------------------------------------------------


class ClipJitter:
    """One random crop and flip per clip, the same on every frame and on both sides (and the flow).

    Frames `A`, `B` uint8 `(N, T, C, H, W)` go to the device in [-1, 1]; `flow` `(N, T, 2, h, w)`
    is first resized to the frames' size (its vectors scaled) and `valid` with it (nearest); a
    flip mirrors the flow field and negates its x component. Draws come from the global random
    stream, which checkpoints keep, so a resumed run jitters as the uninterrupted one.

    Example:
        >>> frames = torch.zeros(2, 3, 3, 8, 8, dtype=torch.uint8)  # (N, T, C, H, W)
        >>> out = ClipJitter().prepare({"A": frames, "B": frames}, BatchSpec(torch.device("cpu"), crop_size=6))
        >>> tuple(out["A"].shape), tuple(out["B"].shape)
        ((2, 3, 3, 6, 6), (2, 3, 3, 6, 6))
    """

    image_keys = ("A", "B")

    def prepare(self, batch: Mapping[str, Any], spec: BatchSpec) -> dict[str, Any]:
        missing = [k for k in self.image_keys if k not in batch]
        if missing or batch["A"].ndim != 5:
            raise DataError(
                "This method trains on clips of frames (A and B of shape (N, T, C, H, W)), but the dataset gives "
                f"{', '.join(f'{k} {tuple(v.shape)}' for k, v in batch.items() if isinstance(v, torch.Tensor))}; use "
                'the video_frames dataset ([data] dataset = "video_frames").'
            )
        out = dict(batch)
        for key in self.image_keys:
            out[key] = to_unit_range(batch[key].to(spec.device))
        n, t, _, height, width = out["A"].shape
        if "flow" in batch:
            flow = batch["flow"].to(spec.device).float().flatten(0, 1)
            valid = batch["valid"].to(spec.device).float().flatten(0, 1)
            if flow.shape[-2:] != (height, width):
                flow = resize_flow(flow, (height, width))
                valid = F.interpolate(valid, size=(height, width), mode="nearest")
            out["flow"] = flow.view(n, t, 2, height, width)
            out["valid"] = valid.view(n, t, 1, height, width) > 0.5
        crop = spec.crop_hw or (height, width)
        if crop[0] > height or crop[1] > width:
            raise DataError(f"Frames of {height}x{width} are smaller than data.crop_size {crop}; raise data.load_size.")
        keys = [k for k in (*self.image_keys, "flow", "valid") if k in out]
        if spec.train:
            tops = torch.randint(0, height - crop[0] + 1, (n,)).tolist()
            lefts = torch.randint(0, width - crop[1] + 1, (n,)).tolist()
            flips = (torch.rand(n) < 0.5).tolist() if spec.flip else [False] * n
        else:
            tops, lefts, flips = [(height - crop[0]) // 2] * n, [(width - crop[1]) // 2] * n, [False] * n
        for key in keys:
            rows = []
            for i in range(n):
                x = out[key][i, :, :, tops[i] : tops[i] + crop[0], lefts[i] : lefts[i] + crop[1]]
                if flips[i]:
                    x = x.flip(-1)
                    if key == "flow":
                        x = x * torch.tensor([-1.0, 1.0], device=x.device).view(1, 2, 1, 1)
                rows.append(x)
            out[key] = torch.stack(rows).contiguous()
        return out


# --- the command ------------------------------------------------------------------------------


@cli_command
def synth_video_command(
    root: Annotated[Path, typer.Argument(help="Folder to write train/ and test/ into (A/, B/, flow/).")],
    train: Annotated[int, typer.Option(min=1, help="Training sequences.")] = 8,
    test: Annotated[int, typer.Option(min=1, help="Test sequences.")] = 2,
    frames: Annotated[int, typer.Option(min=2, help="Frames per sequence.")] = 12,
    size: Annotated[int, typer.Option(min=32, help="Frame side in pixels.")] = 64,
    source: Annotated[str, typer.Option(help="both (alternate real and synthetic facades), facades or synthetic.")]
    = "both",
    facades: Annotated[Path, typer.Option(help="The pix2pix facades folder (A|B jpgs in train/, test/).")]
    = Path("../shared/data/facades"),
    seed: Annotated[int, typer.Option(help="The same seed gives the same videos.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace existing splits.")] = False,
) -> None:
    """Film facades (real pairs and synthetic ones) with a moving virtual camera: label and photo frame
    sequences with their exact optical flow, for video-to-video translation (the video_frames dataset)."""
    if source not in ("both", "facades", "synthetic"):
        raise DataError(f"--source {source!r}: expected both, facades or synthetic.")
    counts = write_synth_video(root, sequences={"train": train, "test": test}, frames=frames, size=size,
                               source=source, facades=facades, seed=seed, overwrite=overwrite)  # type: ignore[arg-type]
    typer.echo(f"Wrote {sum(counts.values())} sequences of {frames} frames ({size}x{size}) to {root} "
               f"({', '.join(f'{k} {v}' for k, v in counts.items())}); A: label maps, B: photos, flow/: backward flow.")


@hookimpl
def translate_kit_add_data_commands(data: typer.Typer) -> None:
    """`tkit data synth-video`, beside the core's `tkit data` commands."""
    data.command("synth-video")(synth_video_command)
