"""`load_run`: a trained run in Python, ready to predict.

    run = dlcli.load_run("runs/quickstart")             # a run directory, or a folder of runs (its newest)
    run.config                                           # the config as trained
    run.model                                            # the network, eval mode, best checkpoint, on `device`
    run.predict(frame_or_array)                          # the table `dlcli predict` prints, for in-memory rows
    run.history, run.history_frame                       # metrics.csv: a dict per epoch, or a pandas frame
"""

from __future__ import annotations

import tempfile
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from .. import runs
from ..engine.device import resolve_device
from ..errors import DataError
from ..runs.run import Run
from .predict import predict_file
from .reports import newest_run


class LoadedRun(Run):
    """A `Run` with its network loaded on first use (`checkpoint`, `device` chosen at `load_run`)."""

    which: str = "best"
    device_name: str | None = None
    notes: list[str]

    @cached_property
    def device(self):
        return resolve_device(self.device_name or "auto")

    @cached_property
    def loaded(self) -> tuple:
        """(network, the checkpoint used, its epoch)."""
        model, chosen, epoch = self.network(self.which, self.device)
        return model.eval(), chosen, epoch

    @property
    def model(self):
        """The network in eval mode on the requested device, with the chosen checkpoint's weights.
        `model.predict(x)` gives probabilities (or values) for inputs already scaled as the run scaled them."""
        return self.loaded[0]

    @property
    def checkpoint_used(self) -> str:
        return self.loaded[1]

    @property
    def epoch(self) -> int:
        return self.loaded[2]

    @property
    def history(self) -> list[dict]:
        """metrics.csv: a dict per epoch (epoch, lr, train_loss, ..., val_loss, ...), the first epoch first."""
        path = self.path / runs.METRICS
        return runs.read_metrics(path) if path.exists() else []

    @property
    def history_frame(self) -> pd.DataFrame:
        """metrics.csv as a pandas frame, a row per epoch."""
        return pd.DataFrame(self.history)

    def predict(self, data, *, batch_size: int | None = None) -> pd.DataFrame:
        """Predict raw rows as `dlcli predict` does: the run's feature columns picked by name, its fill values
        and scaler applied, the output columns (prob_<class>..., predicted; or pred_<target>) after the
        frame's other columns. `data`: a DataFrame holding the run's feature columns, or an array of rows
        shaped (n, features) or (n, *input_shape) in the config's feature order. What preparing did
        (rows dropped, values filled) is in `run.notes` afterwards."""
        with tempfile.TemporaryDirectory(prefix="dlcli-predict-") as folder:
            path = self._as_file(data, Path(folder))
            table, _, self.notes = predict_file(self, self.model, path, self.device, batch_size=batch_size)
        return table

    def _as_file(self, data, folder: Path) -> Path:
        """In-memory rows as a file that predict's reader takes, so they are prepared by the same code."""
        names = self.labels.get("feature_names")
        if isinstance(data, np.ndarray) or not isinstance(data, pd.DataFrame):
            x = np.asarray(data, dtype=np.float32)
            if names:  # a table run: columns named as the run's features
                if x.ndim == 1:
                    x = x.reshape(1, -1)
                if x.ndim != 2 or x.shape[1] != len(names):
                    raise DataError(f"the run takes rows of {len(names)} features ({', '.join(names[:4])}, ...); "
                                    f"got an array shaped {list(x.shape)}")
                data = pd.DataFrame(x, columns=names)
            else:  # images, or a run without named features: one array, as an .npy file is read
                path = folder / "rows.npy"
                np.save(path, x)
                return path
        path = folder / "rows.parquet"
        try:
            data.to_parquet(path, index=False)
        except (ValueError, TypeError, ImportError, ArithmeticError):  # columns parquet cannot hold
            path = folder / "rows.csv"
            data.to_csv(path, index=False)
        return path


def load_run(run_dir: str | Path, *, checkpoint: str = "best", device: str | None = None) -> LoadedRun:
    """Open a trained run: RUN_DIR, or a folder of runs (its newest completed one). The network is loaded
    from `checkpoint` (best, falling back to last; or last) on `device` (auto, cpu, cuda, ...) on first use.
    RunError for a directory that is not a usable run."""
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be best or last, got {checkpoint!r}")
    chosen, _ = newest_run(Path(run_dir))
    run = LoadedRun.open(chosen)
    run.which, run.device_name, run.notes = checkpoint, device, []
    run.checkpoint(checkpoint)  # a missing or refused checkpoint fails here, not at the first prediction
    return run
