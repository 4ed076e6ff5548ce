"""`summarize`: the Keras `model.summary()` table of a config's or a run's network, as rich or plain text."""

from __future__ import annotations

import io
from pathlib import Path

from ..config import load_config
from ..engine.setup import prepare
from ..nn.network import Network, build_model
from ..nn.summary import summary_dict
from ..runs.layout import CONFIG, RUN_INFO
from ..runs.run import Run


def summarize(target: str | Path) -> tuple[Network, str]:
    """The network of a config file or a run directory, and the name its summary is titled with.

    A run gives its stored input shape; a config its `model.input_shape`, else its data's (then loaded).
    """
    target = Path(target)
    if target.is_dir() and (target / RUN_INFO).exists():
        run = Run.open(target)
        with run.config.section("model"):
            return build_model(run.config, run.input_shape or None), run.config.name or run.path.parent.name
    path = target / CONFIG if target.is_dir() else target
    cfg = load_config(path)
    if cfg.model.input_shape or cfg.data is None:
        with cfg.section("model"):
            model = build_model(cfg)
    else:
        model = prepare(cfg).model
    return model, cfg.name or (target.parent.name if target.is_dir() else target.stem)


def summary_table(model: Network, name: str = "sequential"):
    """A rich Table of the summary, and the totals as lines under it."""
    from rich.table import Table

    s = summary_dict(model, name)
    table = Table(title=f'Model: "{s["name"]}"', title_justify="left")
    table.add_column("Layer (type)")
    table.add_column("Output Shape")
    table.add_column("Param #", justify="right")
    for row in s["layers"]:
        table.add_row(f"{row['name']} ({row['type']})", _shape(row["output_shape"]), f"{row['params']:,}")
    totals = [
        f" Total params: {s['total_params']:,} ({_bytes(s['size_bytes'])})",
        f" Trainable params: {s['trainable_params']:,}",
        f" Non-trainable params: {s['non_trainable_params']:,}",
    ]
    return table, totals


def summary_text(model: Network, name: str = "sequential") -> str:
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=80, no_color=True, force_terminal=False)
    table, totals = summary_table(model, name)
    console.print(table)
    for line in totals:
        console.print(line, highlight=False)
    return buffer.getvalue().rstrip()


def _shape(shape: list) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.2f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"
