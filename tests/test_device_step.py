"""The launch-free step's CPU-testable parts (train/step.py, train/graphs.py): the device-side
non-finite check (a NaN at step k is skipped and counted exactly as the host check does, and a
resumed run equals the uninterrupted one), learning rates as tensors, and when the CUDA-graph path
is chosen and what it says when it is not. Capture itself needs a GPU
(benchmarks/gpu_paper_run.py checks it there)."""

from __future__ import annotations

import pytest
import torch
from test_train import make_trainer, weights

from translate_kit.errors import TrainingError
from translate_kit.method import Method
from translate_kit.recipe import TrainConfig, load_recipe
from translate_kit.train.distributed import Distributed
from translate_kit.train.graphs import GraphedStep, graph_blocker, lr_tensors, portable_state, training_step
from translate_kit.train.state import TrainState
from translate_kit.train.step import NonfiniteCounter, StepResult, StepRunner
from translate_kit.train.trainer import Trainer


class _Linear(Method):
    """One linear layer trained on a regression loss; `poison` steps get a NaN loss."""

    def __init__(self, poison: set[int] = frozenset()) -> None:
        super().__init__()
        self.nets = torch.nn.ModuleDict({"G": torch.nn.Linear(4, 2)})
        self.roles = {"G": "translate"}
        self.poison = poison

    def optimizer_groups(self):
        return {"G": ["G"]}

    def training_step(self, batch, ctx):
        loss = (self.nets["G"](batch["A"]) - batch["B"]).pow(2).mean()
        if ctx.step in self.poison:
            loss = loss * float("nan")
        ctx.update("G", loss)
        return {"loss": loss.detach()}


def _run(check: str, poison: set[int], steps: int = 6) -> tuple[_Linear, torch.optim.Optimizer, list[StepResult]]:
    torch.manual_seed(0)
    method = _Linear(poison)
    optimizer = torch.optim.Adam(method.nets["G"].parameters(), lr=0.1, fused=True)
    runner = StepRunner(method, {"G": optimizer}, device=torch.device("cpu"), autocast_dtype=None, scaler=None,
                        nonfinite_check=check)
    batches = [{"A": torch.randn(3, 4), "B": torch.randn(3, 2)} for _ in range(steps)]
    return method, optimizer, [runner(b, step=i, epoch=0) for i, b in enumerate(batches)]


def test_device_check_skips_exactly_as_the_host_check():
    host_method, host_opt, host_results = _run("host", {2, 3})
    device_method, device_opt, device_results = _run("device", {2, 3})
    assert [r.skipped for r in host_results] == [(), (), ("G",), ("G",), (), ()]
    assert all(r.skipped == () and r.pending is not None for r in device_results)  # known on the device only
    assert [float(r.pending) for r in device_results] == [0, 0, 1, 1, 0, 0]
    for a, b in zip(host_method.parameters(), device_method.parameters(), strict=True):
        assert torch.equal(a, b)  # the skipped updates left weights and Adam's moments untouched
    for p, q in zip(host_opt.state.values(), device_opt.state.values(), strict=True):
        assert float(p["step"]) == float(q["step"]) == 4 and torch.equal(p["exp_avg"], q["exp_avg"])


def test_counter_reads_device_flags_in_order_and_stops_after_the_limit(tmp_path):
    state = TrainState()
    counter = NonfiniteCounter(state, limit=3, checkpoint_dir=tmp_path)
    flags = [0, 1, 1, 0, 1]
    for flag in flags:
        counter.add(StepResult({}, (), torch.tensor(float(flag))))
    assert state.nonfinite_total == 0  # nothing read yet: no wait for the device
    counter.settle()
    assert (state.nonfinite_total, state.nonfinite_in_row) == (3, 1)
    counter.add(StepResult({}, ("G",)))  # a host-checked step is counted at once
    assert (state.nonfinite_total, state.nonfinite_in_row) == (4, 2)
    counter.add(StepResult({}, (), torch.tensor(1.0)))
    with pytest.raises(TrainingError, match="3 steps in a row"):
        counter.settle()


def test_device_check_needs_fused_adam_and_no_grad_scaler():
    method = _Linear()
    rmsprop = torch.optim.RMSprop(method.parameters())
    with pytest.raises(ValueError, match="group.*G.*no fused Adam"):
        StepRunner(method, {"G": rmsprop}, device=torch.device("cpu"), autocast_dtype=None, scaler=None,
                   nonfinite_check="device")


def test_trainer_counts_a_nan_at_step_k_and_resumes_exactly(registry, pm, tiny_facades, tmp_path):
    """NaN batches at steps 1 and 4 of 6 (crossing an epoch and a checkpoint) with the device check: both
    are skipped and counted, and a run interrupted after step 3 and resumed ends with the same weights and
    counts (the host check's twin is tests/test_train.py's)."""
    poisoned_steps = {1, 4}

    def poison(trainer: Trainer) -> Trainer:
        real = trainer.method.training_step

        def step(batch, ctx):
            scale = float("nan") if ctx.step in poisoned_steps else 1.0
            return real(dict(batch, B=batch["B"] * scale), ctx)

        trainer.method.training_step = step
        return trainer

    schedule = ["train.nonfinite_check=device", "train.epochs=1", "train.decay_epochs=2"]
    straight = poison(make_trainer(registry, pm, tiny_facades, tmp_path / "a", *schedule, steps=6))
    history = straight.fit()
    assert straight.state.nonfinite_total == 2 and history[-1]["nonfinite_total"] == 2

    first = poison(make_trainer(registry, pm, tiny_facades, tmp_path / "b", *schedule, steps=3))
    first.fit()
    recipe = load_recipe(first.run_dir / "recipe.toml", ["train.max_steps=6"], registry=registry)
    resumed = poison(Trainer(recipe, registry=registry, pm=pm, device="cpu", run_dir=first.run_dir, resume=True))
    assert resumed.state.nonfinite_total == 1
    resumed.fit()
    assert resumed.state.nonfinite_total == 2
    expected, got = weights(straight), weights(resumed)  # batch norm's running stats saw the NaN batches
    assert all(torch.allclose(expected[k], got[k], rtol=0, atol=0, equal_nan=True) for k in expected)
    assert all(torch.isfinite(v).all() for k, v in got.items() if "running" not in k)


def test_host_and_device_checks_train_the_same_weights(registry, pm, tiny_facades, tmp_path):
    runs = {}
    for check in ("host", "device"):  # built and run one after the other: building seeds the global RNG
        runs[check] = make_trainer(registry, pm, tiny_facades, tmp_path / check, f"train.nonfinite_check={check}",
                                   steps=3)
        runs[check].fit()
    assert runs["device"].step_runner.nonfinite_check == "device"
    expected, got = weights(runs["host"]), weights(runs["device"])
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_learning_rate_tensors_follow_the_schedule_in_place_and_save_as_floats():
    method = _Linear()
    optimizer = torch.optim.Adam(method.parameters(), lr=0.1, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5**epoch)
    lr_tensors({"G": optimizer}, torch.device("cpu"))
    rate = optimizer.param_groups[0]["lr"]
    optimizer.step()  # no gradients: nothing moves (and the scheduler sees the order it expects)
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] is rate and float(rate) == pytest.approx(0.05)  # filled, not replaced
    saved = portable_state(optimizer)
    assert saved["param_groups"][0]["lr"] == pytest.approx(0.05) and isinstance(saved["param_groups"][0]["lr"], float)
    fresh = torch.optim.Adam(_Linear().parameters(), lr=0.1, fused=True)
    fresh.load_state_dict(saved)
    lr_tensors({"G": fresh}, torch.device("cpu"))
    assert isinstance(fresh.param_groups[0]["lr"], torch.Tensor) and float(fresh.param_groups[0]["lr"]) == pytest.approx(0.05)


def _blocker(method: Method, device: str = "cuda", **kwargs) -> str | None:
    optimizers = {"G": torch.optim.Adam(method.parameters(), fused=True)}
    options = {"scaler": None, "distributed": False, "compiled": False} | kwargs
    return graph_blocker(method, optimizers, device=torch.device(device), **options)


def test_graph_plan_names_what_blocks_capture():
    static = _Linear()
    static.static_step = True
    assert _blocker(static) is None
    assert _blocker(static, "cpu") == "the device is not a CUDA GPU"
    assert "_Linear" in _blocker(_Linear()) and "static step" in _blocker(_Linear())
    assert "fp16" in _blocker(static, scaler=object())
    assert "several processes" in _blocker(static, distributed=True)
    assert "train.compile" in _blocker(static, compiled=True)
    rmsprop = graph_blocker(static, {"D": torch.optim.RMSprop(static.parameters())}, device=torch.device("cuda"),
                            scaler=None, distributed=False, compiled=False)
    assert "D" in rmsprop and "fused" in rmsprop


def _plan(method: Method, device: str, **train) -> tuple[StepRunner, object, list[str]]:
    said: list[str] = []
    optimizers = {"G": torch.optim.Adam(method.parameters(), fused=True)}
    runner, step = training_step(method, optimizers, TrainConfig(**train), device=torch.device(device),
                                 autocast_dtype=None, scaler=None, distributed=Distributed(), ema=None,
                                 say=lambda text, **_: said.append(text))
    return runner, step, said


def test_graph_path_is_chosen_only_on_cuda_and_its_fallback_is_said_once():
    static = _Linear()
    static.static_step = True
    runner, step, said = _plan(static, "cpu")
    assert step is runner and runner.nonfinite_check == "host" and said == []  # the CPU: silent, host check
    runner, step, said = _plan(static, "cuda")  # built only; capture happens at the 4th step on a GPU
    assert isinstance(step, GraphedStep) and runner.nonfinite_check == "device" and said == []
    runner, step, said = _plan(_Linear(), "cuda")
    assert step is runner and said == [
        "No CUDA graph for the training step: the method (_Linear) does not declare a static step "
        "(Method.static_step: the same kernels every step, no host reads); training eagerly."]
    runner, step, said = _plan(static, "cuda", nonfinite_check="host")
    assert step is runner and "nonfinite_check" in said[0]
    assert _plan(static, "cuda", cuda_graphs="off")[2] == []


def test_first_party_static_steps(registry):
    from translate_kit.api import build_method

    def built(recipe: str, *small: str) -> Method:
        overrides = list(small) or ["generator.ngf=4", "discriminator.ndf=4"]
        return build_method(load_recipe(f"recipes/{recipe}.toml", overrides, registry=registry), registry)

    assert Method.static_step is False and built("pix2pix_facades").static_step is True
    assert built("pix2pixhd_facades", "generator.ngf=4", "generator.n_blocks=1").static_step is True
    assert built("pix2pixhd_facades_features", "generator.ngf=4", "generator.n_blocks=1", "encoder.ngf=2").static_step is False  # per-instance pooling reads the device
    assert built("cyclegan_facades").static_step is True  # its image pools choose on the device
    assert built("stargan_facades", "generator.conv_dim=4", "discriminator.conv_dim=4").static_step is False  # n_critic: which networks step depends on ctx.step


class _NoStream:
    """Stands in for a CUDA stream on the CPU, where the work is already in order."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def wait_stream(self, other) -> None:
        pass


def test_a_failed_capture_is_said_once_and_training_goes_on_eagerly_and_exactly(monkeypatch):
    """GraphedStep's path without a GPU: three warm-up steps (on a stand-in side stream), a capture
    that fails, one line, and eager steps after, with the same weights as a plain runner."""
    import contextlib

    def refuse(graph):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    monkeypatch.setattr(torch.cuda, "Stream", _NoStream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: _NoStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: object())
    monkeypatch.setattr(torch.cuda, "graph", refuse)

    def trained(graphed: bool) -> tuple[list[torch.Tensor], list[str]]:
        torch.manual_seed(0)
        method = _Linear()
        optimizer = torch.optim.Adam(method.parameters(), lr=0.1, fused=True)
        runner = StepRunner(method, {"G": optimizer}, device=torch.device("cpu"), autocast_dtype=None, scaler=None,
                            nonfinite_check="device")
        said: list[str] = []
        step = GraphedStep(runner, say=said.append) if graphed else runner
        for i in range(6):
            result = step({"A": torch.randn(3, 4), "B": torch.randn(3, 2)}, step=i, epoch=0)
            assert float(result.pending) == 0 and set(result.scalars) == {"loss"}
        return [p.detach().clone() for p in method.parameters()], said

    (graphed_weights, said), (eager_weights, _) = trained(True), trained(False)
    assert said == ["CUDA graph capture of the training step failed (RuntimeError: operation not permitted when "
                    "stream is capturing); training eagerly. Set train.cuda_graphs = \"off\" to skip the attempt."]
    assert all(torch.equal(a, b) for a, b in zip(graphed_weights, eager_weights, strict=True))
