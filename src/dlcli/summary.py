"""The model summary: Keras' `model.summary()` table, for a built `Network`.

Parameters are counted per config layer, as Keras does: trainable weights, plus non-trainable
state that is saved with the model (batch normalization's running mean and variance).
"""

from __future__ import annotations

import io

from .models import Network


def summary_dict(model: Network, name: str = "sequential") -> dict:
    rows = []
    trainable = non_trainable = size = 0
    for info in model.layers_info:
        t = sum(p.numel() for m in info.modules for p in m.parameters() if p.requires_grad)
        frozen = sum(p.numel() for m in info.modules for p in m.parameters() if not p.requires_grad)
        frozen += sum(b.numel() for m in info.modules for n, b in m.named_buffers() if b.is_floating_point())
        size += sum(p.numel() * p.element_size() for m in info.modules for p in m.parameters())
        size += sum(b.numel() * b.element_size() for m in info.modules for b in m.buffers() if b.is_floating_point())
        trainable += t
        non_trainable += frozen
        rows.append({"name": info.name, "type": info.type, "output_shape": [None, *info.output_shape],
                     "params": t + frozen})
    return {
        "name": name,
        "input_shape": [None, *model.input_shape],
        "output_activation": model.output_activation,
        "layers": rows,
        "total_params": trainable + non_trainable,
        "trainable_params": trainable,
        "non_trainable_params": non_trainable,
        "size_bytes": size,
    }


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
