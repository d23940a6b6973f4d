"""The trainer: everything around a method's optimisation step, read top to bottom.

The method owns its networks, losses and batches, and does one step. The trainer builds it from
the recipe, puts it on the device in the recipe's precision, gives it optimisers and schedules,
feeds it batches in a resumable order, and keeps the run folder: checkpoints, samples, the page,
and the run events plugins listen to.

    trainer = Trainer(recipe, registry=registry, pm=pm, console=console)
    trainer.fit()

Under torchrun the same trainer runs once per process (see `distributed.py`): each network is
wrapped in DistributedDataParallel, each rank trains on its share of every global batch, and rank
0 alone writes the run folder, prints and calls the run-event hooks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import default_collate

from translate_kit.accel import accelerate
from translate_kit.build import autocast_dtype, build_method, check_sizes, select_device, uses_channels_last
from translate_kit.data.loading import training_data
from translate_kit.errors import CheckpointError
from translate_kit.method import BatchSpec, Method, private_rng, test_time, unwrap
from translate_kit.progress import format_stats, make_progress
from translate_kit.recipe import Recipe
from translate_kit.registry import Registry
from translate_kit.train import checkpoint as ckpt
from translate_kit.train import distributed as ddp
from translate_kit.train.distributed import Distributed
from translate_kit.train.graphs import portable_state, training_step
from translate_kit.train.optim import EMA, build_optimizers, lr_factor
from translate_kit.train.run_folder import RunFolder, absolute_data_root, no_checkpoint_error
from translate_kit.train.signals import StopSignal
from translate_kit.train.state import TrainState
from translate_kit.train.step import NonfiniteCounter
from translate_kit.train.validate import Validation

__all__ = ["TrainState", "Trainer"]


class Trainer:
    """Train a recipe's method; see the module docstring.

    Args:
        recipe: a validated recipe.
        registry: the components the recipe names.
        pm: the plugin manager whose run-event hooks are called.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        console: rich console for progress and messages (none: quiet).
        run_dir: the run folder (default `<run.dir>/<run.name>`).
        resume: continue from the newest checkpoint in `run_dir`.
        overwrite: delete an existing run folder and start over.
        checkpoint: with `resume`, the (path, contents) of that checkpoint, if already loaded.
        distributed: this process's place among several (torchrun); default: the initialised
            process group's, or one process. Each rank trains on `batch_size / world_size` images.
    """

    def __init__(
        self,
        recipe: Recipe,
        *,
        registry: Registry,
        pm: Any,
        device: str = "auto",
        console: Any | None = None,
        run_dir: Path | None = None,
        resume: bool = False,
        overwrite: bool = False,
        checkpoint: tuple[Path, Mapping[str, Any]] | None = None,
        distributed: Distributed | None = None,
    ) -> None:
        self.dist = distributed if distributed is not None else Distributed.current()
        (self.recipe, self._root_note), self.registry, self.pm = absolute_data_root(recipe), registry, pm
        self.console = console if self.dist.is_main else None  # only rank 0 prints
        self.device = self.dist.place(select_device(device))
        self.folder = RunFolder(run_dir if run_dir is not None else Path(recipe.run.dir) / recipe.run.name)
        self.run_dir, self.checkpoint_dir = self.folder.path, self.folder.checkpoints
        self.state = TrainState()
        self.history: list[dict[str, float]] = []
        self.stop_requested = False  # agreed by every rank after each step
        self.stop_signal = StopSignal(self.console)  # this process got SIGINT/SIGTERM
        self.resumed_from: Path | None = None
        self._reset_log_window()
        self.rank_batch_size = ddp.rank_batch_size(recipe.train.batch_size, self.dist, where=recipe.where("train"))
        if resume:
            found = checkpoint if checkpoint is not None else ckpt.newest_checkpoint(self.checkpoint_dir)
            if found is None:
                raise no_checkpoint_error(self.run_dir)
            self.resumed_from = found[0]
        self.folder.claim(resume=resume, overwrite=overwrite, lock=self.dist.is_main)
        try:
            self._build(found[1] if resume else None, fresh=overwrite and not resume)
        except BaseException:
            self.folder.abandon()
            raise

    def _build(self, resume_from: Mapping[str, Any] | None, *, fresh: bool) -> None:
        recipe, train = self.recipe, self.recipe.train
        random.seed(recipe.run.seed)
        torch.manual_seed(recipe.run.seed)
        # Every rank builds from the same seed, so all start equal (DDP also copies rank 0's weights).
        self.method: Method = build_method(recipe, self.registry)
        check_sizes(self.method, recipe, training=True)
        if resume_from is None:  # a fresh run: weights it starts from, before optimisers and averages
            self.method.warm_start()
        nets = self.method.nets
        if self.dist.enabled and train.sync_batchnorm:
            ddp.sync_batchnorm(nets, self.dist, self.device, where=recipe.where("train"), per_rank=self.rank_batch_size)
        accelerate(self.method, self.device)
        self.channels_last = uses_channels_last(train.memory_format, self.device)
        self.method.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        if self.dist.rank:  # rank 0 keeps run.seed's stream, so one process trains as it always did
            self._seed_stream(step=0)
        if self.dist.enabled:
            ddp.wrap_for_processes(nets, self.device)
        if train.compile:
            for name in list(nets):
                nets[name] = torch.compile(nets[name])

        self.autocast_dtype = autocast_dtype(train.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.autocast_dtype == torch.float16 else None
        self.optimizers = build_optimizers(self.method, train, self.device)
        self.schedulers = {g: torch.optim.lr_scheduler.LambdaLR(o, lr_factor(train)) for g, o in self.optimizers.items()}
        self.ema = EMA({n: nets[n] for n in self.method.translate_nets}, train.ema_decay) if train.ema_decay else None
        self.step_runner, self.train_step = training_step(
            self.method, self.optimizers, train, device=self.device, autocast_dtype=self.autocast_dtype,
            scaler=self.scaler, distributed=self.dist, ema=self.ema, say=self.console.print if self.console else None)
        self.nonfinite = NonfiniteCounter(self.state, limit=train.max_nonfinite_steps, checkpoint_dir=self.checkpoint_dir)

        data = training_data(recipe, self.registry, dist=self.dist, pin_memory=self.device.type == "cuda",
                             console=self.console, device=self.device)
        self.dataset, self.sampler, self.loader = data.dataset, data.sampler, data.loader
        self.steps_per_epoch = data.steps_per_epoch
        self.batch_spec = BatchSpec(self.device, recipe.data.crop_size, recipe.data.flip, self.channels_last)
        self.validation = (Validation(recipe, self.registry, self.method, self.device, self.run_dir)
                           if train.eval_every else None)
        if resume_from is not None:
            self._restore(resume_from)
        self.dist.barrier()  # every rank has built and checked everything before the folder changes
        if self.dist.is_main:
            recipe_text = f"# Resolved recipe of this run (from {recipe.source}).\n{self._root_note}" + recipe.to_toml()
            self.folder.prepare(fresh=fresh, recipe_text=recipe_text, skipped=self.dataset.skipped)
        self._saved_step = self.state.step if resume_from is not None else -1

    def _seed_stream(self, step: int) -> None:
        """Give this rank its own random stream (dropout, jitter, image pools): see `stream_seed`."""
        seed = ddp.stream_seed(self.recipe.run.seed, self.dist.rank, step)
        random.seed(seed)
        torch.manual_seed(seed)  # and every CUDA device's generator

    # ----------------------------------------------------------------------------------------
    # The loop

    @property
    def total_epochs(self) -> int:
        return self.recipe.train.epochs + self.recipe.train.decay_epochs

    @property
    def total_steps(self) -> int:
        steps = self.total_epochs * self.steps_per_epoch
        return min(steps, self.recipe.train.max_steps) if self.recipe.train.max_steps else steps

    def fit(self) -> list[dict[str, float]]:
        """Train until the recipe's epochs (or `train.max_steps`) are done; return the logged records."""
        train = self.recipe.train
        self.folder.hold(lock=self.dist.is_main)  # again, after an earlier fit() gave it back
        status = "failed"
        with make_progress(self.console) as progress, self.stop_signal.watching():
            task = progress.add_task("train", total=self.total_steps, completed=self.state.step, stats="")
            try:
                self._hook("translate_kit_run_start")
                while self.state.epoch < self.total_epochs and not self._finished():
                    epoch = self.state.epoch
                    progress.update(task, description=f"epoch {epoch + 1}/{self.total_epochs}")
                    epoch_sums, epoch_count = self._train_epoch(progress, task)
                    if self.state.epoch_step < self.steps_per_epoch:  # stopped inside the epoch
                        break
                    for scheduler in self.schedulers.values():
                        scheduler.step()
                    self.state.epoch, self.state.epoch_step = epoch + 1, 0
                    sums = self.dist.mean_of(self.device, epoch_sums)
                    means = {k: float(v) / max(epoch_count, 1) for k, v in sums.items()}
                    if (epoch + 1) % train.sample_every == 0 or self.state.epoch == self.total_epochs:
                        self.write_samples(epoch + 1)
                    self._hook("translate_kit_epoch_end", epoch=epoch, scalars=means)
                    if (epoch + 1) % train.checkpoint_every == 0:
                        self.save_checkpoint()
                self._flush_log()
                self.save_checkpoint()
                if self.state.epoch_step:  # stopped mid-epoch: show where it got to
                    self.write_samples(self.state.epoch + 1)
                status = "interrupted" if self.stop_requested else "completed"
            finally:
                self._hook("translate_kit_run_end", status=status)
                self.close()
        return self.history

    def close(self) -> None:
        """Give the run folder's lock back (`fit` does at its end; so does the process's end)."""
        self.folder.release()

    def _train_epoch(self, progress: Any, task: Any) -> tuple[dict[str, torch.Tensor], int]:
        """Train the rest of the epoch in progress; return the sums of its logged scalars and their count."""
        self.sampler.set_epoch(self.state.epoch, start=self.state.epoch_step * self.rank_batch_size)
        sums: dict[str, torch.Tensor] = {}
        count = 0
        self.method.train()
        # A rank's shard is ceil(len / world_size) images, which can hold one batch more than
        # the epoch's len // batch_size global steps; every rank stops at the same step.
        for batch in itertools.islice(self.loader, self.steps_per_epoch - self.state.epoch_step):
            batch = self.method.prepare_batch(batch, self.batch_spec)
            result = self.train_step(batch, step=self.state.step, epoch=self.state.epoch)
            self.state.step += 1
            self.state.epoch_step += 1
            self.nonfinite.add(result)
            for key, value in result.scalars.items():
                self._log_sums[key] = self._log_sums.get(key, 0) + value.float()
                sums[key] = sums.get(key, 0) + value.float()
            self._log_count += 1
            count += 1
            progress.advance(task)
            if self.state.step % self.recipe.train.log_every == 0:
                progress.update(task, stats=format_stats(self._flush_log()))
            if self.validation is not None and self.validation.due(self.state.step):
                self.validate()
            # A stop signal arrives at one rank's own moment; all ranks must stop after the same
            # step, or the others would wait in the next gradient all-reduce: agree on it.
            self.stop_requested = self.stop_requested or self.dist.any(self.stop_signal.received)
            if self._finished():
                break
        return sums, count

    def _finished(self) -> bool:
        max_steps = self.recipe.train.max_steps
        return self.stop_requested or bool(max_steps and self.state.step >= max_steps)

    def _reset_log_window(self) -> None:
        self._log_sums: dict[str, torch.Tensor] = {}
        self._log_count = 0
        self._log_time = time.perf_counter()

    def _flush_log(self) -> dict[str, float]:
        """Append the means since the last log to `history` and tell the loggers."""
        if not self._log_count:
            return {}
        elapsed = max(time.perf_counter() - self._log_time, 1e-9)
        self.nonfinite.settle()  # device-checked steps: their skips are counted now, in order
        record: dict[str, float] = {"step": self.state.step, "epoch": self.state.epoch}
        sums = self.dist.mean_of(self.device, self._log_sums)
        record.update({k: float(v) / self._log_count for k, v in sums.items()})
        record["lr"] = float(next(iter(self.optimizers.values())).param_groups[0]["lr"]) if self.optimizers else 0.0
        # batch_size is the global batch: this is the whole job's speed, not one rank's.
        record["images_per_s"] = self._log_count * self.recipe.train.batch_size / elapsed
        record["nonfinite_total"] = self.state.nonfinite_total
        record["data_skipped"] = len(self.dataset.skipped)
        self.history.append(record)
        self._hook("translate_kit_train_log", step=self.state.step, epoch=self.state.epoch, scalars=record)
        self._reset_log_window()
        return record

    def validate(self) -> dict[str, float]:
        """Score the validation split now (`train.eval_every`): keep `best.pt` when the score is the
        best so far, refresh the page, print the scores and tell the plugins."""
        assert self.validation is not None, "validate() needs train.eval_every > 0"
        record, best = self.validation.run(self.method, step=self.state.step, epoch=self.state.epoch, ema=self.ema)
        if self.dist.is_main:
            if best:
                self.validation.save_best(self.method, ema=self.ema, state=dataclasses.asdict(self.state))
            if self.console is not None:
                self.console.print(self.validation.summary(record), markup=False, highlight=False)
            self.write_page()
        self._hook("translate_kit_validation", step=self.state.step, epoch=self.state.epoch, scores=record)
        return record

    def _hook(self, name: str, **kwargs: Any) -> None:
        """Call a run-event hook, on rank 0 only: plugins (loggers, notifiers) see one run, not one
        per process, and rank 0's run folder is the only one."""
        if self.dist.is_main:
            getattr(self.pm.hook, name)(trainer=self, **kwargs)

    # ----------------------------------------------------------------------------------------
    # Samples and the run page

    def sample_names(self) -> list[str]:
        return [str(self.dataset[i]["name"]) for i in range(min(self.recipe.train.num_samples, len(self.dataset)))]

    @torch.no_grad()
    def write_samples(self, epoch: int) -> None:
        """Translate the first `train.num_samples` training images (prepared as for evaluation: a
        centre crop, no jitter) in the method's `sample_mode`, with the averaged weights when
        there are some, and refresh `index.html`.

        Every rank runs the networks, rank 0 alone writes: in "paper" mode a SyncBatchNorm layer
        takes batch statistics from all ranks, so a forward pass on rank 0 alone would wait for
        the others forever.
        """
        names = self.sample_names()
        spec = dataclasses.replace(self.batch_spec, train=False)
        averaged = self.ema.applied(self.method) if self.ema is not None else contextlib.nullcontext()
        # A private RNG: sampling must not move the training RNG, or resumes would not be exact.
        with private_rng(self.device), averaged, test_time(self.method, self.method.sample_mode):
            torch.manual_seed(self.recipe.run.seed)
            for index, name in enumerate(names):
                batch = self.method.prepare_batch(default_collate([self.dataset[index]]), spec)
                with self.step_runner.autocast():
                    output = self.method.translate(batch["A"])
                if self.dist.is_main:
                    self.folder.save_samples(epoch, [name], batch["A"], output, batch["B"])
        if self.dist.is_main:
            self.write_page(names)

    def write_page(self, names: list[str] | None = None) -> Path:
        """Refresh `index.html` from the sample images on disk and the logged history."""
        summary = {
            "recipe": self.recipe.source,
            "method": str(self.recipe.components["method"].get("name")),
            "step": str(self.state.step),
            "epoch": f"{self.state.epoch}/{self.total_epochs}",
            "device": str(self.device) if not self.dist.enabled else f"{self.device.type}, {self.dist.world_size} processes",
        }
        return self.folder.write_page(
            self.sample_names() if names is None else names, title=f"translate-kit run: {self.recipe.run.name}",
            summary=summary, history=self.history, recipe_text=self.recipe.to_toml(),
            validation=self.validation.records if self.validation is not None else (),
        )

    # ----------------------------------------------------------------------------------------
    # Checkpoints

    def _rank_state(self) -> dict[str, Any]:
        """What a checkpoint keeps per rank: its random streams and method state (CycleGAN's pools), on the CPU."""
        return {"rng": ckpt.rng_state(self.device), "method_state": ckpt.to_cpu(self.method.extra_state())}

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimisers, schedules, RNGs, position.

        This is rank 0's view; `save_checkpoint` adds the other ranks' own states (`ranks`) and
        every rank's parameter fingerprints (`replica_fingerprints`) when training on several.
        """
        own = self._rank_state()
        state = dataclasses.asdict(self.state) | {"world_size": self.dist.world_size, "dataset_size": len(self.dataset)}
        training = {
            "optimizers": {g: portable_state(o) for g, o in self.optimizers.items()},
            "schedulers": {g: s.state_dict() for g, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": own["rng"],
            "history": list(self.history),
            "validation": self.validation.state_dict() if self.validation is not None else None,
        }
        nets = {name: unwrap(net).state_dict() for name, net in self.method.nets.items()}
        ema = self.ema.state_dict() if self.ema is not None else None
        return ckpt.checkpoint_dict(self.recipe.to_dict(), nets, ema=ema, method_state=self.method.extra_state(),
                               state=state, training=training)

    def save_checkpoint(self) -> Path:
        """Write a checkpoint of the current step (once per step), keep the newest K, tell plugins.

        With several processes every rank calls this at the same step: the ranks' own states are
        gathered to rank 0, which alone writes, and nobody goes on before the file is complete.
        The ranks' parameter fingerprints are compared, since a checkpoint holding rank 0's
        weights stands for all ranks only if they are equal.
        """
        self.nonfinite.settle()
        path = self.checkpoint_dir / f"step_{self.state.step:09d}.pt"
        # One decision for all ranks, from rank 0's disk (the others may not even see it).
        if self.dist.main_says(self._saved_step == self.state.step and path.exists()):
            return path
        self._saved_step = self.state.step
        fingerprints = others = None
        if self.dist.enabled:
            plain = {name: unwrap(net) for name, net in self.method.nets.items()}
            fingerprints = self.dist.all_gather(ddp.parameter_fingerprints(plain))
            others = self.dist.gather(None if self.dist.is_main else self._rank_state())
        if self.dist.is_main:
            state = self.checkpoint_state()
            if fingerprints is not None and others is not None:
                state["ranks"] = {rank: own for rank, own in enumerate(others) if rank}
                state["replica_fingerprints"] = fingerprints
            try:
                ckpt.atomic_save(state, path)
            except CheckpointError as exc:
                raise CheckpointError(f"{exc} Continue the run with `tkit train --resume {self.run_dir}`.") from None
            ckpt.prune_checkpoints(self.checkpoint_dir, self.recipe.train.keep_checkpoints, newest=path)
            self._hook("translate_kit_checkpoint_saved", path=path, step=self.state.step)
        self.dist.barrier()
        if fingerprints is not None:
            ddp.check_replicas(fingerprints, step=self.state.step, path=path)
        return path

    def _restore(self, saved: Mapping[str, Any]) -> None:
        where = self.resumed_from or "the checkpoint"
        try:
            for name, net in self.method.nets.items():
                unwrap(net).load_state_dict(saved["nets"][name])
            for group, optimizer in self.optimizers.items():
                optimizer.load_state_dict(saved["optimizers"][group])
            for group, scheduler in self.schedulers.items():
                scheduler.load_state_dict(saved["schedulers"][group])
            if self.ema is not None and saved.get("ema"):
                self.ema.load_state_dict(saved["ema"])
            elif self.ema is not None:  # a run that kept none: the averages start from the loaded weights
                self.ema.reset()
        except (KeyError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(
                f"{where} does not fit the networks of this recipe ({first}). Resume without --set overrides "
                "that change the architecture."
            ) from None
        if self.scaler is not None and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        for warning in ckpt.check_resume(saved, self.recipe, where=str(where), dataset_size=len(self.dataset),
                                         world_size=self.dist.world_size):
            if self.console is not None:
                self.console.print(f"[yellow]{warning}")
        for key in ("epoch", "epoch_step", "step", "nonfinite_total", "nonfinite_in_row"):
            setattr(self.state, key, saved["state"].get(key, 0))
        self.history = [dict(r) for r in saved.get("history", []) if r.get("step", 0) <= self.state.step]
        if self.validation is not None:
            self.validation.load_state_dict(saved.get("validation"), step=self.state.step)
        if not self.dist.same_everywhere(self.state.step):
            raise CheckpointError(
                f"The {self.dist.world_size} processes resumed from checkpoints of different steps. Every process "
                "must see the same run folder: put it on a file system all machines share."
            )
        self._restore_rank_state(saved)

    def _restore_rank_state(self, saved: Mapping[str, Any]) -> None:
        """Restore this rank's random streams and method state, or start fresh ones if the
        checkpoint was written by fewer processes and so has none for this rank."""
        own = {"rng": saved["rng"], "method_state": saved.get("method_state", {})}
        if self.dist.rank:
            own = saved.get("ranks", {}).get(self.dist.rank)
        if own is None:  # rank 0's image pools and the like are as good a history as any
            self.method.load_extra_state(saved.get("method_state", {}))
            self._seed_stream(step=self.state.step)
            return
        self.method.load_extra_state(own["method_state"])
        ckpt.set_rng_state(own["rng"], self.device)
