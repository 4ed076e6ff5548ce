"""Progress of a run: a live bar on a terminal, one line per epoch.

The bar shows the epoch's running train loss. Reading it makes the host wait for the device, so it is
read when the bar redraws, at most `REFRESH` times a second, never once per step. On a terminal each
epoch's line fits its width: short names (loss, val_acc), and the values that do not fit left out
(metrics.csv has them all); elsewhere (a log file, a pipe) the line holds every value under its
metrics.csv name.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..messages import relative_paths, short_name

REFRESH = 4  # bar redraws (and running-loss reads) per second, at most
# The order in which values earn a place on a narrow line: what Keras shows first.
FIRST = ("train_loss", "val_loss")
LAST = ("lr", "epoch_seconds")


class Progress:
    def __init__(self, epochs: int, batches: int, enabled: bool | None = None):
        from rich.console import Console

        self.console = Console()
        self.epochs, self.batches = epochs, batches
        self.live = self.console.is_terminal if enabled is None else enabled
        self.bar = None
        self._last_update = 0.0
        self._told_left_out = False

    def __enter__(self):
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            # epoch 12/60 [bar] 123/456 loss 0.1234 0:00:07: the bar takes what the text leaves of the line
            bar_width = max(10, min(40, self.console.width - 48))
            self.bar = RichProgress(TextColumn("{task.description}"), BarColumn(bar_width=bar_width),
                                    MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                                    TimeRemainingColumn(), console=self.console, transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=self.batches, loss="-")
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def start_epoch(self, epoch: int) -> None:
        if self.bar is not None:
            self.bar.reset(self.task, total=self.batches, description=f"epoch {epoch}/{self.epochs}", loss="-")

    def batch(self, b: int, running_loss: Callable[[], float]) -> None:
        """Batch `b` is done; `running_loss` (a host sync) is called only when the bar redraws."""
        if self.bar is None:
            return
        now = time.monotonic()
        if b == self.batches - 1:  # the epoch's line follows at once: no loss read for this redraw
            self.bar.update(self.task, completed=b + 1)
        elif now - self._last_update >= 1 / REFRESH:
            self._last_update = now
            self.bar.update(self.task, completed=b + 1, loss=_short(running_loss()))

    def note(self, text: str) -> None:
        """A line for the user (a warning, what data loading did), printed above the bar."""
        self.console.print(relative_paths(text), highlight=False, soft_wrap=True, markup=False)

    def resuming(self, run_dir, epoch: int) -> None:
        self.note(f"resuming {run_dir} from epoch {epoch} of {self.epochs} (its last checkpoint)")

    def end_epoch(self, row: dict) -> None:
        if not self.console.is_terminal:
            print(epoch_line(row, self.epochs), flush=True)
            return
        line, left_out = fitted_line(row, self.epochs, self.console.width)
        self.console.print(line, highlight=False, markup=False)
        if left_out and not self._told_left_out:
            self._told_left_out = True
            self.console.print(f"({left_out} more value{'s' if left_out > 1 else ''} per epoch in metrics.csv; "
                               "a wider terminal shows them)", highlight=False, style="dim", soft_wrap=True)


def epoch_line(row: dict, epochs: int) -> str:
    """Every value of the epoch's row, under its metrics.csv name."""
    return "  ".join([f"epoch {row['epoch']}/{epochs}"] + [f"{k} {_short(v)}" for k, v in row.items() if k != "epoch"])


def fitted_line(row: dict, epochs: int, width: int) -> tuple[str, int]:
    """The epoch's row in at most `width` characters, with short names: (the line, how many values it
    leaves out). The losses come first, then validation metrics, train metrics, lr and the time; the
    values shown keep the row's order."""
    head = f"epoch {row['epoch']}/{epochs}"
    items = {k: (_seconds(v) if k == "epoch_seconds" else f"{short_name(k)} {_short(v)}")
             for k, v in row.items() if k != "epoch"}
    rank = sorted(items, key=lambda k: (k not in FIRST, k in LAST, not k.startswith("val_")))
    chosen, used = set(), len(head)
    for key in rank:
        if used + 2 + len(items[key]) <= width:
            chosen.add(key)
            used += 2 + len(items[key])
    line = "  ".join([head] + [text for key, text in items.items() if key in chosen])
    return line, len(items) - len(chosen)


def _seconds(v: float) -> str:
    return f"{v:.1f}s" if v >= 1 else f"{v * 1000:.0f}ms"


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if (abs(v) < 1e-3 and v != 0) else f"{v:.4f}"
    return str(v)
