"""Progress of a run: a live bar on a terminal, one plain line per epoch otherwise.

The bar never reads the loss inside an epoch (that would make the host wait for the GPU); it counts
batches and shows the previous epoch's train loss, and prints each epoch's row once it is known.
"""

from __future__ import annotations

import time


class Progress:
    def __init__(self, epochs: int, batches: int, enabled: bool | None = None):
        from rich.console import Console

        self.console = Console()
        self.epochs, self.batches = epochs, batches
        self.live = self.console.is_terminal if enabled is None else enabled
        self.bar = None
        self.last_loss = "-"
        self._last_update = 0.0

    def __enter__(self):
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TextColumn("last epoch's loss {task.fields[loss]}"), TimeRemainingColumn(),
                                    console=self.console, transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=self.batches, loss="-")
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def start_epoch(self, epoch: int) -> None:
        if self.bar is not None:
            self.bar.reset(self.task, total=self.batches, description=f"epoch {epoch}/{self.epochs}",
                           loss=self.last_loss)

    def batch(self, b: int) -> None:
        if self.bar is None:
            return
        now = time.monotonic()
        if now - self._last_update > 0.2 or b == self.batches - 1:  # redraw at most 5x a second
            self._last_update = now
            self.bar.update(self.task, completed=b + 1)

    def note(self, text: str) -> None:
        """A line for the user (a warning, what data loading did), printed above the bar."""
        self.console.print(text, highlight=False, soft_wrap=True)

    def end_epoch(self, row: dict) -> None:
        self.last_loss = _short(row["train_loss"])
        line = "  ".join([f"epoch {row['epoch']}/{self.epochs}"] + [f"{k} {_short(v)}" for k, v in row.items()
                                                                   if k != "epoch"])
        if self.bar is not None:
            self.console.print(line, highlight=False)
        else:
            print(line, flush=True)


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if (abs(v) < 1e-3 and v != 0) else f"{v:.4f}"
    return str(v)
