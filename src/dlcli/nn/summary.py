"""The model summary as data: Keras' `model.summary()` for a built `Network` (commands/summarize.py renders it).

Parameters are counted per config layer, as Keras does: trainable weights, plus non-trainable
state that is saved with the model (batch normalization's running mean and variance).
"""

from __future__ import annotations

from .network import Network


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
