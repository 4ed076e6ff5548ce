"""The `Run` object: a run directory opened, the one way every command reads a trained run.

    run = Run.open("runs/quickstart/20261202-101500")
    run.config, run.fitted, run.task                       # the config as trained, its scaler, classes, fill
    model, checkpoint, epoch = run.network("best", device)   # the network with a checkpoint's weights
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..config import Config, load_config
from ..data import Fitted, Scaler
from ..errors import RunError
from ..nn.network import Network, build_model
from .checkpoint import REFUSED, load_checkpoint
from .files import DAMAGED, check_inside, read_json
from .layout import CHECKPOINTS, CONFIG, LABELS, RUN_INFO, SCALER, check_run_dir


@dataclass
class Run:
    path: Path
    config: Config  # config.yaml, with any overrides applied
    labels: dict  # labels.json: task, classes, feature_names, input_shape, source, rows, fill
    scaler: Scaler | None  # scaler.json

    @classmethod
    def open(cls, run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Run:
        path = check_run_dir(run_dir)
        config = load_config(path / CONFIG, overrides)
        labels = _checked_labels(read_json(path / LABELS), path / LABELS)  # every run writes one
        scaler = None
        if (path / SCALER).exists():
            try:
                scaler = Scaler.from_dict(read_json(path / SCALER))
            except ValueError as exc:
                raise RunError(f"{path / SCALER}: {exc}; {DAMAGED}") from None
        elif config.data is not None and config.data.scale != "none":  # never predict on unscaled features
            raise RunError(f"{path / SCALER}: is missing, but the run scaled its data (data.scale: "
                           f"{config.data.scale}); {DAMAGED}")
        run = cls(path, config, labels, scaler)
        run._check_scaler()
        return run

    @cached_property
    def info(self) -> dict:
        """run.json: status, times, epochs completed, best epoch (read when asked: evaluate needs none of it)."""
        return read_json(self.path / RUN_INFO)

    @property
    def fitted(self) -> Fitted:
        """What the run fitted on its training rows: passed to the data so that nothing is refitted."""
        return Fitted(self.scaler, self.labels.get("classes"), self.labels.get("fill"))

    @property
    def task(self) -> str:
        return self.labels.get("task") or self.config.task_kind

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.labels.get("input_shape") or self.config.model.input_shape or ())

    def checkpoint(self, which: str = "best") -> tuple[str, Path]:
        """(the checkpoint used, its file): `best` falls back to `last` for a run that never saved a best.
        A checkpoint, or checkpoints/, linked out of the run directory is refused, as when writing."""
        check_inside(self.path, self.path / CHECKPOINTS)
        chosen, path = which, self.path / CHECKPOINTS / f"{which}.pt"
        if which == "best" and not path.exists():
            chosen, path = "last", self.path / CHECKPOINTS / "last.pt"
        if not path.exists():
            if which == "best":
                raise RunError(f"{self.path}: no checkpoint ({CHECKPOINTS}/best.pt and last.pt are missing): the run "
                               "saved none (it stopped before an epoch ended?); train it again")
            other = " (best.pt is there: --checkpoint best)" if (self.path / CHECKPOINTS / "best.pt").exists() else ""
            raise RunError(f"{self.path}: no {which} checkpoint ({path} is missing){other}")
        check_inside(self.path, path)
        return chosen, path

    def load_weights(self, model: Network, which: str, device) -> tuple[str, int]:
        """A checkpoint's weights into `model`, moved to `device`: (the checkpoint used, its epoch)."""
        chosen, path = self.checkpoint(which)
        other = "; `--checkpoint last` may work" if chosen == "best" else ""
        try:
            saved = load_checkpoint(path, device)
        except RunError as exc:
            raise RunError(f"{exc}{other}") from None
        try:
            model.to(device).load_state_dict(saved["model"])
        except (RuntimeError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunError(f"{path}: does not fit the network the config describes ({first}){other}") from None
        epoch = saved["state"].get("epoch") if isinstance(saved["state"], dict) else None
        if not isinstance(epoch, int):
            raise RunError(f"{path}: {REFUSED}{other}")
        return chosen, epoch

    def network(self, which: str = "best", device=None) -> tuple[Network, str, int]:
        """The run's network, built from its config and stored input shape (no training data needed), with
        a checkpoint's weights: (network, the checkpoint used, its epoch)."""
        import torch

        with self.config.section("model"):
            model = build_model(self.config, self.input_shape or None)
        chosen, epoch = self.load_weights(model, which, device or torch.device("cpu"))
        return model, chosen, epoch

    def _check_scaler(self) -> None:
        """The scaler fits the inputs labels.json describes (one offset per value, or per channel)."""
        shape, scaler = self.input_shape, self.scaler
        if scaler is None or not shape:
            return
        expected = shape[0] if scaler.per == "channel" else math.prod(shape)
        if scaler.offset.size != expected:
            raise RunError(f"{self.path / SCALER}: holds {scaler.offset.size} values, but the model takes inputs "
                           f"shaped {list(shape)} ({expected} {'channels' if scaler.per == 'channel' else 'values'});"
                           f" {DAMAGED}")


_LABEL_KINDS = {"task": str, "classes": list, "feature_names": list, "input_shape": list, "source": str,
                "rows": dict, "fill": dict}


def _checked_labels(labels: dict, path: Path) -> dict:
    """labels.json with each key of the kind a run writes (or null)."""
    for key, kind in _LABEL_KINDS.items():
        value = labels.get(key)
        if value is not None and not isinstance(value, kind):
            raise RunError(f"{path}: '{key}' holds a {type(value).__name__}, not a {kind.__name__}; {DAMAGED}")
    shape = labels.get("input_shape")
    if shape is not None and not all(isinstance(d, int) and d > 0 for d in shape):
        raise RunError(f"{path}: 'input_shape' must be positive sizes, got {shape}; {DAMAGED}")
    return labels
