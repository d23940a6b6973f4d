"""Translating videos: the `SequenceTranslator` contract (a method's recurrence, or frame by frame
for image methods), `Translator.translate_sequence` and `translate_video` (mp4 in, frames and mp4 of
the same length and frame rate out)."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from torch import nn
from translate_kit_plugins.video_data import read_video, write_video

from translate_kit.api import DataError, Method, OptionError, SequenceTranslator, Translator, load_recipe
from translate_kit.api import translate_sequence as run_sequence
from translate_kit.inference import translate_video


class Halving(Method):
    """An image method: every frame alone, y = x / 2."""

    def __init__(self) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({"G": nn.Identity()})
        self.roles = {"G": "translate"}

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        return x / 2


class RunningMean(Halving):
    """A recurrent toy: y_t = (x_t + y_{t-1}) / 2, y_0 = x_0 / 2 unless given."""

    def translate_sequence(self, frames, *, first_output=None):
        previous = None
        for x in frames:
            previous = (first_output if first_output is not None else x / 2) if previous is None else \
                (x + previous) / 2
            yield previous


def test_the_protocol_and_its_frame_by_frame_default():
    frames = [torch.full((1, 1, 2, 2), float(v)) for v in (0.8, 0.4, -0.4)]
    assert isinstance(RunningMean(), SequenceTranslator) and not isinstance(Halving(), SequenceTranslator)
    assert [float(y[0, 0, 0, 0]) for y in run_sequence(Halving(), frames)] == pytest.approx([0.4, 0.2, -0.2])
    assert [float(y[0, 0, 0, 0]) for y in run_sequence(RunningMean(), frames)] == pytest.approx([0.4, 0.4, 0.0])
    given = torch.zeros(1, 1, 2, 2)
    assert [float(y[0, 0, 0, 0]) for y in run_sequence(Halving(), frames, first_output=given)] == \
        pytest.approx([0.0, 0.2, -0.2])


@pytest.fixture(scope="module")
def recipe(registry):
    return load_recipe("recipes/pix2pix_facades.toml", registry=registry)


def test_translator_runs_the_recurrence_on_uint8_frames(recipe):
    translator = Translator(RunningMean(), recipe, device="cpu")
    frames = [torch.full((3, 5, 7), v, dtype=torch.uint8) for v in (255, 0, 255, 255)]
    out = [int(y[0, 0, 0]) for y in translator.translate_sequence(frames)]
    # in [-1, 1]: x = 1, -1, 1, 1 -> y = 0.5, -0.25, 0.375, 0.6875 -> uint8 (y + 1) * 127.5
    assert out == [round((y + 1) * 127.5) for y in (0.5, -0.25, 0.375, 0.6875)]
    given = torch.zeros(3, 5, 7, dtype=torch.uint8)
    assert int(next(translator.translate_sequence(frames, first_output=given))[0, 0, 0]) == 0
    with pytest.raises(DataError, match="share one size"):
        list(translator.translate_sequence([frames[0], torch.zeros(3, 6, 7, dtype=torch.uint8)]))


def test_translate_video_keeps_length_and_frame_rate(recipe, tmp_path):
    frames = torch.randint(0, 256, (10, 3, 32, 48), dtype=torch.uint8)
    source = write_video(tmp_path / "in.mp4", frames, fps=Fraction(8))
    translator = Translator(Halving(), recipe, device="cpu")
    written, video = translate_video(translator, source, tmp_path / "out")
    back, rate = read_video(video)
    decoded, _ = read_video(source)
    assert len(written) == 10 and back.shape == (10, 3, 32, 48) and rate == 8
    expected = translator(decoded)  # frame by frame: the image path gives the same frames
    from translate_kit.api import read_image

    assert torch.equal(read_image(written[3]), expected[3])
    with pytest.raises(DataError, match="neither a folder of frames nor a video file"):
        translate_video(translator, tmp_path / "in.txt", tmp_path / "out")


def test_cli_video_inputs_are_checked(tmp_path):
    from translate_kit.cli.translate import _video_source

    (tmp_path / "frames").mkdir()
    assert _video_source([str(tmp_path / "a.png")], video=False) is None
    assert _video_source([str(tmp_path / "frames")], video=True) == tmp_path / "frames"
    with pytest.raises(OptionError, match="on its own"):
        _video_source([str(tmp_path / "frames"), str(tmp_path / "x.mp4")], video=False)
    with pytest.raises(OptionError, match="does not exist"):
        _video_source([str(tmp_path / "x.mp4")], video=False)
