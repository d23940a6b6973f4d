"""vid2vid (translate_kit_plugins.vid2vid): the blend, the recurrence at inference against training's
unrolled forward, the flow network's size, the clip schedule and recipe errors. Training, exact
resume mid-sequence and translation run in tests/test_contracts.py through the shipped recipe."""

from __future__ import annotations

import pytest
import torch
from translate_kit_plugins.gan_losses import lsgan
from translate_kit_plugins.pix2pixhd import global_generator, multiscale
from translate_kit_plugins.vid2vid import FlowMaskNet, Vid2Vid, vid2vid_flow
from translate_kit_plugins.video_data import warp

from translate_kit.api import RecipeError, build_method, load_recipe

RECIPE = "recipes/vid2vid_facades_video.toml"


@pytest.fixture(autouse=True)
def one_thread():
    """16-pixel maps gain nothing from a second thread, and on a shared, busy machine its waits cost
    seconds per test (measured: 4 s against 0.04 s for one unroll)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_method(history: int = 2, temporal_scales: int = 1, clip_double_every: int = 5) -> Vid2Vid:
    torch.manual_seed(0)
    g_in = (history + 1) * 3 + history * 3
    return Vid2Vid(
        global_generator(in_channels=g_in, ngf=4, n_downsampling=2, n_blocks=1),
        vid2vid_flow(in_channels=g_in, ngf=4, n_downsampling=2, n_blocks=1),
        multiscale(in_channels=6, ndf=4, n_layers=2, num_d=1),
        [multiscale(in_channels=3 * 3 + 2 * 2, ndf=4, n_layers=2, num_d=1) for _ in range(temporal_scales)],
        lsgan(), history=history, temporal_frames=3, lambda_fm=10, lambda_vgg=0, vgg_loss=None, lambda_flow=10,
        lambda_warp=10, lambda_temporal=1, clip_start=3, clip_double_every=clip_double_every, first_frame="real",
        out_channels=3,
    ).eval()


def test_generated_frame_blends_warped_previous_and_hallucinated():
    method = tiny_method()
    labels, previous = torch.rand(1, 3, 3, 16, 16) * 2 - 1, torch.rand(1, 2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        out, hallucinated, flow, mask = method.generate_frame(labels, previous)
        x = torch.cat([labels.flatten(1, 2), previous.flatten(1, 2)], 1)
        assert torch.equal(hallucinated, method.nets["G"](x))
        assert torch.allclose(out, mask * warp(previous[:, -1], flow) + (1 - mask) * hallucinated)
        assert mask.min() > 0 and mask.max() < 1 and flow.shape == (1, 2, 16, 16)
        first, _, no_flow, _ = method.generate_frame(labels, None)  # a first frame: hallucinated only
        zeros = torch.cat([labels.flatten(1, 2), torch.zeros(1, 6, 16, 16)], 1)
        assert no_flow is None and torch.equal(first, method.nets["G"](zeros))


@pytest.mark.parametrize("given", [False, True])
def test_recurrence_at_inference_equals_the_unrolled_training_forward(given):
    method = tiny_method()
    labels = torch.rand(2, 5, 3, 16, 16) * 2 - 1
    first = torch.rand(2, 3, 16, 16) * 2 - 1 if given else None
    with torch.no_grad():
        unrolled = method.unroll(labels, first)["frames"]
        stepped = torch.stack(list(method.translate_sequence(labels.unbind(1), first_output=first)), 1)
    assert torch.equal(unrolled, stepped)
    if given:
        assert torch.equal(stepped[:, 0], first)
    else:
        assert torch.equal(stepped[:, 0], method.translate(labels[:, 0]))
    assert not torch.allclose(stepped[:, 1], method.translate(labels[:, 1]))  # history matters


def test_unroll_returns_each_frames_parts():
    """The flows, masks and hallucinated images `unroll` returns (which the losses judge) are those
    each frame was blended from, the previous frame carried along the flow."""
    method = tiny_method()
    with torch.no_grad():
        out = method.unroll(torch.rand(1, 4, 3, 16, 16) * 2 - 1)
    frames = out["frames"]
    for t in range(1, 4):
        flow, mask, raw = out["flows"][t - 1], out["masks"][t - 1], out["hallucinated"][t - 1]
        assert torch.allclose(frames[:, t], mask * warp(frames[:, t - 1], flow) + (1 - mask) * raw, atol=1e-6)


def test_flow_network_parameters_by_hand():
    net = FlowMaskNet(in_channels=15, ngf=4, n_downsampling=2, n_blocks=1, norm="instance")

    def conv(c_in, c_out, k):
        return c_in * c_out * k * k + c_out

    expected = conv(15, 4, 7) + conv(4, 8, 3) + conv(8, 16, 3) + 2 * conv(16, 16, 3)
    expected += conv(16, 8, 3) + conv(8, 4, 3)  # transposed convolutions count the same
    expected += conv(4, 2, 3) + conv(4, 1, 3)  # flow and mask heads
    assert sum(p.numel() for p in net.parameters()) == expected
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.zeros(1, 15, 18, 18))


def test_progressive_clip_length():
    method = tiny_method()
    assert [method.clip_length(step, 12) for step in (0, 4, 5, 10, 15, 100)] == [3, 3, 6, 12, 12, 12]
    assert method.clip_length(0, 2) == 2


def test_recipe_errors_name_the_key(registry):
    with pytest.raises(RecipeError, match="clip_start"):
        build_method(load_recipe(RECIPE, ["method.clip_start=2"], registry=registry), registry)
    with pytest.raises(RecipeError, match="history"):
        build_method(load_recipe(RECIPE, ["method.history=0"], registry=registry), registry)


class _Context:
    """A StepContext that only back-propagates (the trainer's is exercised by the contract tests)."""

    step, epoch = 0, 0

    def autocast(self):
        import contextlib

        return contextlib.nullcontext()

    def update(self, group, loss):
        loss.backward()
        return True


@pytest.mark.parametrize("first_frame", ["real", "generated"])
def test_training_step_flow_loss_by_hand(first_frame):
    method = tiny_method().train()
    method.first_frame = first_frame
    torch.manual_seed(1)
    batch = {"clip_A": torch.rand(2, 4, 3, 16, 16) * 2 - 1, "clip_B": torch.rand(2, 4, 3, 16, 16) * 2 - 1,
             "flow": torch.zeros(2, 4, 2, 16, 16), "valid": torch.ones(2, 4, 1, 16, 16, dtype=torch.bool)}
    with torch.no_grad():
        first = batch["clip_B"][:, 0] if first_frame == "real" else None
        unrolled = method.unroll(batch["clip_A"][:, :3], first)
        flows, masks = torch.stack(unrolled["flows"]), torch.stack(unrolled["masks"])
    logged = method.training_step(batch, _Context())
    assert logged["clip_length"] == 3  # clip_start 3 at step 0, of the 4 frames given
    # zero true flow, every pixel valid: the flow loss is the mean |predicted flow| over both channels
    assert torch.allclose(logged["loss_flow"], flows.abs().mean(), atol=1e-6)
    # the weight loss pulls the mask towards carrying the previous frame over (1) on valid pixels
    assert torch.allclose(logged["loss_mask"], (1 - masks).mean(), atol=1e-6)
    assert all(torch.isfinite(v) for v in logged.values())
    for name in ("G", "F", "D", "D_T0"):  # every network got gradients
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.nets[name].parameters()), name


def test_temporal_inputs_take_frames_apart_with_composed_flow():
    method = tiny_method(temporal_scales=2)
    frames = torch.arange(7.0).view(1, 7, 1, 1, 1).expand(1, 7, 3, 16, 16)
    flow = torch.zeros(1, 7, 2, 16, 16)
    flow[:, :, 0] = 0.5  # every frame's content was half a pixel to the right
    near = method._temporal_inputs(frames, flow, 0)  # frames 4, 5, 6 and two one-step flows
    far = method._temporal_inputs(frames, flow, 1)  # frames 0, 3, 6 and two three-step flows
    assert near.shape == far.shape == (1, 3 * 3 + 2 * 2, 16, 16)
    assert far[0, :9:3, 0, 0].tolist() == [0.0, 3.0, 6.0] and near[0, :9:3, 0, 0].tolist() == [4.0, 5.0, 6.0]
    assert torch.allclose(far[0, 9::2], torch.full((2, 16, 16), 1.5))  # x: three half-pixel steps
    assert torch.equal(far[0, 10::2], torch.zeros(2, 16, 16))  # y: none
    assert torch.allclose(near[0, 9::2], torch.full((2, 16, 16), 0.5))
    assert method._temporal_inputs(frames[:, :6], flow[:, :6], 1) is None  # 6 frames cannot span 0..6


def test_two_temporal_scales_all_train_on_seven_frames():
    method = tiny_method(temporal_scales=2, clip_double_every=0).train()
    torch.manual_seed(2)
    batch = {"clip_A": torch.rand(1, 7, 3, 16, 16) * 2 - 1, "clip_B": torch.rand(1, 7, 3, 16, 16) * 2 - 1,
             "flow": torch.rand(1, 7, 2, 16, 16), "valid": torch.ones(1, 7, 1, 16, 16, dtype=torch.bool)}
    logged = method.training_step(batch, _Context())
    assert logged["clip_length"] == 7 and all(torch.isfinite(v) for v in logged.values())
    for name in ("D_T0", "D_T1"):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.nets[name].parameters()), name
