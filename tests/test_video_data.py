"""Video data (translate_kit_plugins.video_data): exact synthetic flow, warping, the warping error,
clip jitter, the frame-sequence dataset, mp4 round trips and `tkit data synth-video`."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from translate_kit_plugins.video_data import (
    ClipJitter,
    camera_flow,
    camera_path,
    compose_flow,
    flow_valid,
    read_video,
    render_view,
    resize_flow,
    synth_video_sequence,
    video_frames,
    warp,
    warping_error,
    write_video,
)
from typer.testing import CliRunner

from translate_kit.api import BatchSpec


@pytest.fixture(autouse=True)
def one_thread():
    """Frames of 32 pixels gain nothing from a second thread, whose waits cost seconds on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_camera_flow_is_exact_on_a_linear_ramp():
    """Rendering and warping both interpolate bilinearly, which is exact for a linear picture: so
    warp(frame t-1, flow t) equals frame t on every valid pixel up to float rounding, for pans,
    zooms and rotations alike. A wrong flow (even by a fraction of a pixel) fails this."""
    ys, xs = torch.meshgrid(torch.arange(100.0), torch.arange(120.0), indexing="ij")
    ramp = torch.stack([xs, ys, 0.3 * xs - 0.7 * ys])
    poses = camera_path(6, 32, (100, 120), seed=5, pan=2.0, zoom_rate=0.03, spin=0.02)
    assert len({p.angle for p in poses}) > 1 and len({p.zoom for p in poses}) > 1  # it rotates and zooms
    frames = torch.stack([render_view(ramp, p, 32, "bilinear") for p in poses])
    for t in range(1, 6):
        flow = camera_flow(poses[t - 1], poses[t], 32)[None]
        valid = flow_valid(flow)
        assert 0.5 < valid.float().mean() <= 1
        error = (warp(frames[t - 1 : t], flow) - frames[t : t + 1]).abs() * valid
        assert error.max() < 2e-3, f"frame {t}: max error {error.max():.2e} px"
        still = (frames[t - 1 : t] - frames[t : t + 1]).abs() * valid
        assert still.max() > 0.1  # the camera did move


def test_stored_flow_reproduces_the_next_photo_frame():
    photo = torch.randint(0, 256, (3, 52, 52), dtype=torch.uint8)
    photo = torch.nn.functional.avg_pool2d(photo[None].float(), 5, 1, 2)[0].to(torch.uint8)  # smooth texture
    clip = synth_video_sequence(photo, photo, frames=5, size=32, seed=1)
    frames = clip["B"].float() / 255
    moved = warping_error(frames, clip["flow"], clip["valid"])
    still = warping_error(frames, torch.zeros_like(clip["flow"]), clip["valid"])
    assert moved < 0.012 and moved < 0.35 * still  # interpolation error only
    assert not clip["valid"][0].any() and clip["valid"][1:].float().mean() > 0.8
    assert torch.equal(clip["flow"][0], torch.zeros(2, 32, 32))


def test_warp_compose_and_resize_by_hand():
    image = torch.arange(12.0).view(1, 1, 3, 4)
    shift = torch.zeros(1, 2, 3, 4)
    shift[:, 0] = 1  # take the pixel to the right
    assert torch.allclose(warp(image, shift)[0, 0, :, :3], image[0, 0, :, 1:])
    assert torch.equal(flow_valid(shift)[0, 0, :, 3], torch.zeros(3, dtype=torch.bool))  # from outside
    later, earlier = torch.full((1, 2, 3, 4), 0.5), torch.full((1, 2, 3, 4), 0.25)
    assert torch.allclose(compose_flow(later, earlier), torch.full((1, 2, 3, 4), 0.75))
    big = resize_flow(torch.ones(1, 2, 5, 9), (9, 17))  # pitch halves: vectors double
    assert torch.allclose(big, torch.full_like(big, 2.0))


def test_warping_error_by_hand():
    frames = torch.zeros(2, 4, 3, 4, 4)
    frames[:, 2] += 0.5  # frame 2 flashes: |0.5 - 0| at frame 2 and at frame 3
    flow = torch.zeros(2, 4, 2, 4, 4)
    valid = torch.ones(2, 4, 1, 4, 4, dtype=torch.bool)
    assert math.isclose(float(warping_error(frames, flow, valid)), (0 + 0.5 + 0.5) / 3, abs_tol=1e-6)
    valid[:, 2:] = False  # only frame 1 counts
    assert float(warping_error(frames, flow, valid)) == 0
    with pytest.raises(ValueError, match="T >= 2"):
        warping_error(frames[:, :1], flow[:, :1])


def test_clip_jitter_is_identical_across_frames_and_sides():
    torch.manual_seed(0)
    base = torch.randint(0, 256, (2, 1, 3, 12, 12), dtype=torch.uint8)
    clips = {"A": base.expand(2, 4, 3, 12, 12).clone(), "B": base.expand(2, 4, 3, 12, 12).clone(),
             "flow": torch.ones(2, 4, 2, 12, 12), "valid": torch.ones(2, 4, 1, 12, 12, dtype=torch.uint8)}
    flips = 0
    for _ in range(6):
        out = ClipJitter().prepare(clips, BatchSpec(torch.device("cpu"), crop_size=8))
        assert out["A"].shape == (2, 4, 3, 8, 8) and out["flow"].shape == (2, 4, 2, 8, 8)
        assert torch.equal(out["A"], out["B"])  # one window for both sides
        assert torch.equal(out["A"], out["A"][:, :1].expand_as(out["A"]))  # and for every frame
        signs = out["flow"][:, :, 0].flatten(1)
        assert torch.equal(signs.min(1).values, signs.max(1).values)  # one flip per clip
        flips += int((signs[:, 0] < 0).sum())
    assert 0 < flips < 12  # flips happen, not always; a flipped flow points the other way in x
    centre = ClipJitter().prepare(clips, BatchSpec(torch.device("cpu"), crop_size=8, train=False))
    assert torch.equal(centre["A"][:, 0], base[:, 0, :, 2:10, 2:10].float() / 127.5 - 1)


def test_dataset_clips_and_synth_video_command(tmp_path):
    import translate_kit_plugins.video_data as video_data

    from translate_kit.cli import make_app

    app = make_app()
    group = next(g.typer_instance for g in app.registered_groups if g.name == "data")
    video_data.translate_kit_add_data_commands(data=group)
    result = CliRunner().invoke(app, ["data", "synth-video", str(tmp_path / "v"), "--train", "2", "--test", "1",
                                      "--frames", "5", "--size", "32", "--source", "synthetic"])
    assert result.exit_code == 0, result.output
    assert "synth-video" not in CliRunner().invoke(make_app(), ["data", "--help"]).output  # the core's app untouched
    data = video_frames(root=str(tmp_path / "v"), clip_length=3, clip_stride=2)
    assert len(data) == 2 * 2  # starts 0 and 2 of five frames, two sequences
    item = data[1]
    assert item["A"].shape == (3, 3, 32, 32) and item["B"].dtype == torch.uint8
    assert item["name"] == "synth_000/00002"
    assert torch.equal(item["flow"][0], torch.zeros(2, 32, 32)) and not item["valid"][0].any()
    stored = torch.load(tmp_path / "v" / "train" / "flow" / "synth_000.pt", weights_only=True)
    assert torch.equal(item["flow"][1:], stored["flow"][3:5])
    again = CliRunner().invoke(app, ["data", "synth-video", str(tmp_path / "v"), "--source", "synthetic"])
    assert again.exit_code == 1 and "--overwrite" in again.output
    with pytest.raises(Exception, match="lower data clip_length"):
        video_frames(root=str(tmp_path / "v"), clip_length=9)


def test_video_file_round_trip(tmp_path):
    ys, xs = torch.meshgrid(torch.arange(32), torch.arange(48), indexing="ij")
    frames = torch.stack([torch.stack([(xs * 5 + 8 * t) % 256, ys * 7, torch.full_like(xs, 40 * t)])
                          for t in range(6)]).to(torch.uint8)
    path = write_video(tmp_path / "clip.mp4", frames, fps=Fraction(12))
    back, rate = read_video(path)
    assert back.shape == frames.shape and rate == 12
    assert (back.float() - frames.float()).abs().mean() < 6  # lossy H.264 at crf 18
