"""Per-epoch work around the training loop, as small callback objects (Lightning's vocabulary, fewer hooks).

    on_fit_start(training)          before the first epoch (after a resumed run's state is loaded)
    on_epoch_start(training, epoch)
    on_train_batch_end(training, b) after each step; only callbacks with `per_batch` set get it
    on_epoch_end(training, row)     the epoch's row (metrics.csv's), after the schedule has stepped
    on_fit_end(training)            always, also when training stops with an error
    on_note(text)                   a line for the user: what loading did, a warning

They run in list order: `standard_callbacks` puts early stopping first, so the checkpoint saved
after it records whether the run stopped. A callback that writes files or prints has
`rank_zero_only`: under data-parallel training `on_rank` keeps it on rank 0 alone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .. import runs
from ..config import Config
from ..errors import RunError
from ..runs.checkpoint import HistoryPack, save_checkpoint
from .progress import Progress
from .state import Training


class Callback:
    rank_zero_only = True
    per_batch = False

    def on_fit_start(self, training: Training) -> None:
        pass

    def on_epoch_start(self, training: Training, epoch: int) -> None:
        pass

    def on_train_batch_end(self, training: Training, b: int) -> None:
        pass

    def on_epoch_end(self, training: Training, row: dict) -> None:
        pass

    def on_fit_end(self, training: Training) -> None:
        pass

    def on_note(self, text: str) -> None:
        pass


def on_rank(callbacks: list[Callback], rank: int) -> list[Callback]:
    """The callbacks a process of rank `rank` runs: all of them on rank 0, those not `rank_zero_only` elsewhere."""
    return [cb for cb in callbacks if rank == 0 or not cb.rank_zero_only]


class EarlyStopping(Callback):
    """Stop once the monitored value has not improved for more than `patience` epochs (train.early_stopping)."""

    rank_zero_only = False  # every rank must stop at the same epoch

    def __init__(self, patience: int):
        self.patience = patience

    def on_epoch_end(self, training, row):
        if training.state.bad_epochs > self.patience:
            training.state.stopped_early = True


class Checkpoint(Callback):
    """checkpoints/last.pt after every epoch (and before the first, so a run killed then can resume), and
    best.pt when the monitored value improved; best first, so a kill between the two never leaves best
    behind last's record."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.history = HistoryPack()

    def on_fit_start(self, training):
        if not training.resumed:
            self.save(training, "last.pt")

    def on_epoch_end(self, training, row):
        names = ("best.pt", "last.pt") if training.improved else ("last.pt",)  # the same bytes: serialized once
        self.save(training, *names)

    def save(self, training: Training, *names: str) -> None:
        save_checkpoint([self.folder / name for name in names], model=training.model, optimizer=training.optimizer,
                        schedule=training.schedule, grad_scaler=training.grad_scaler, state=vars(training.state),
                        generator=training.generator, history=self.history)


class MetricsLog(Callback):
    """metrics.csv, rewritten whole after every epoch; a resumed run first drops rows written after its
    checkpoint."""

    def __init__(self, path: Path):
        self.file = runs.MetricsFile(path)

    def on_fit_start(self, training):
        if training.resumed:
            self.file.write(training.state.history)

    def on_epoch_end(self, training, row):
        self.file.write(training.state.history)


class TensorBoard(Callback):
    """Every epoch's values as TensorBoard scalars in `folder` (train.tensorboard; the tensorboard extra)."""

    def __init__(self, folder: Path):
        self.board = summary_writer()(log_dir=str(folder))

    def on_epoch_end(self, training, row):
        for key, value in row.items():
            if key not in ("epoch", "epoch_seconds"):
                self.board.add_scalar(key, value, row["epoch"])
        self.board.flush()

    def on_fit_end(self, training):
        self.board.close()


class ProgressBar(Callback):
    """A live bar on a terminal (the running loss read a few times a second, not per step), a line per epoch;
    a resumed run first says where it goes on from."""

    def __init__(self, epochs: int, enabled: bool | None = None, run_dir: Path | None = None):
        self.progress = Progress(epochs, 0, enabled=enabled)
        self.per_batch = self.progress.live
        self.run_dir = run_dir

    def on_note(self, text):
        self.progress.note(text)

    def on_fit_start(self, training):
        self.progress.batches = training.batches_per_epoch
        if training.resumed:
            self.progress.resuming(self.run_dir, training.state.epoch)
        for note in training.setup.data.notes:
            self.progress.note(note)
        self.progress.__enter__()

    def on_epoch_start(self, training, epoch):
        self.progress.start_epoch(epoch)

    def on_train_batch_end(self, training, b):
        self.progress.batch(b, training.running.mean)

    def on_epoch_end(self, training, row):
        self.progress.end_epoch(row)

    def on_fit_end(self, training):
        self.progress.__exit__(None, None, None)


class OnEpochEnd(Callback):
    """A function called with (training, row) after every epoch: a run's run.json, a tuning trial's report."""

    def __init__(self, fn: Callable[[Training, dict], None], *, rank_zero_only: bool = True):
        self.fn, self.rank_zero_only = fn, rank_zero_only

    def on_epoch_end(self, training, row):
        self.fn(training, row)


def summary_writer():
    """torch's TensorBoard SummaryWriter; RunError when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise RunError("tracking with tensorboard needs the tensorboard package: pip install 'dlcli[tensorboard]' "
                       "(or uv sync --extra tensorboard)") from None
    return SummaryWriter


def wants_tensorboard(cfg: Config) -> bool:
    return bool(cfg.train.tensorboard or any(entry.type == "tensorboard" for entry in cfg.tracking or []))


def standard_callbacks(cfg: Config, run_dir: Path, *, progress: bool | None = None) -> list[Callback]:
    """What every run does per epoch, as its config says: early stopping, checkpoints, metrics.csv,
    TensorBoard, the progress bar."""
    tc = cfg.train
    callbacks: list[Callback] = [EarlyStopping(tc.early_stopping.patience)] if tc.early_stopping else []
    callbacks += [Checkpoint(runs.run_folder(run_dir, runs.CHECKPOINTS)), MetricsLog(Path(run_dir) / runs.METRICS)]
    if wants_tensorboard(cfg):
        callbacks.append(TensorBoard(Path(run_dir) / "tb"))
    callbacks.append(ProgressBar(tc.epochs, progress, run_dir))
    return callbacks
