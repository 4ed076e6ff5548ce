"""`validate`: check a config, its data and its model against each other without training."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import load_config
from ..engine.device import config_device
from ..engine.setup import prepare
from ..nn.summary import summary_dict


@dataclass
class Validation:
    task: str
    layers: int
    parameters: int
    source: str  # where the data comes from
    rows: dict[str, int]  # per split
    notes: list[str]  # what loading the data did, and a custom loss's argument order


def validate(config: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Validation:
    """Load the config, its data and its model as training would (on its train.device, which must be
    here); raise the first problem found."""
    cfg = load_config(config, overrides)
    if cfg.tune is not None:  # the search space too: every config it can make, before any data is read
        from .tune_checks import check_objective, check_space

        check_objective(cfg)
        check_space(cfg)
    setup = prepare(cfg, device=config_device(cfg))
    summary = summary_dict(setup.model)
    return Validation(setup.task, len(summary["layers"]), summary["total_params"], setup.data.source,
                      setup.data.rows(), [*setup.data.notes, *_loss_notes(setup.loss)])


def _loss_notes(loss) -> list[str]:
    """What the loss has to say: the order a custom loss's arguments are passed in."""
    note = getattr(loss, "note", None)
    return [note] if note else []
