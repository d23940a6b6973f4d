"""Where a run is: the position a checkpoint resumes from, and the count of skipped updates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from translate_kit.errors import TrainingError

__all__ = ["TrainState"]


@dataclass
class TrainState:
    """Where a run is: the resume point, saved in every checkpoint."""

    epoch: int = 0  # the epoch in progress (0-based)
    epoch_step: int = 0  # batches of that epoch already done
    step: int = 0  # optimisation steps done in total
    nonfinite_in_row: int = 0
    nonfinite_total: int = 0

    def count_nonfinite(self, skipped: bool, *, limit: int, checkpoint_dir: Path) -> None:
        """Count a step whose update was `skipped` for a NaN/inf loss; stop the run after `limit`
        such steps in a row (the run has diverged)."""
        if not skipped:
            self.nonfinite_in_row = 0
            return
        self.nonfinite_in_row += 1
        self.nonfinite_total += 1
        if self.nonfinite_in_row >= limit:
            raise TrainingError(
                f"The loss was NaN or infinite in {self.nonfinite_in_row} steps in a row (step {self.step}); training "
                f"stopped. The newest checkpoint in {checkpoint_dir} holds the last good weights. Lower train.lr, "
                "try train.precision = \"fp32\", or check the data."
            )
