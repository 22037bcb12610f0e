"""``kd/*`` and ``fidelity/*`` scalars into ``RUN_DIR/tb``, or nowhere (benchmarks and tests)."""

from pathlib import Path
from typing import Callable, Dict, Mapping, Optional


class ScalarLog:
    """A TensorBoard writer that may be switched off; callers log without checking."""

    def __init__(self, directory: Optional[Path] = None) -> None:
        self.writer = None
        if directory is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(directory))

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def epoch_hook(self, prefix: str) -> Callable[[int, Dict[str, float]], None]:
        """A training loop's per-epoch callback that logs under ``prefix``. It counts epochs
        itself, so a phase trained in rounds (cooperative) draws one continuous curve."""
        epochs_seen = [0]

        def hook(_: int, values: Dict[str, float]) -> None:
            self.scalars(prefix, values, epochs_seen[0])
            epochs_seen[0] += 1

        return hook

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
