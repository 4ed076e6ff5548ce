"""`list`: every name a config may use, from the registries themselves."""

from __future__ import annotations

from ..nn.activations import ACTIVATIONS
from ..nn.augment import AUGMENTS
from ..nn.layers import LAYERS
from ..nn.losses import LOSSES
from ..nn.metrics import METRICS
from ..nn.optimizers import OPTIMIZERS
from ..nn.schedules import SCHEDULES
from ..registry import Registry

SECTIONS: tuple[tuple[str, Registry], ...] = (
    ("layers", LAYERS), ("activations", ACTIVATIONS), ("losses", LOSSES), ("optimizers", OPTIMIZERS),
    ("schedules", SCHEDULES), ("metrics", METRICS), ("augmentations (data.augment)", AUGMENTS),
)


def catalogue() -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """[(section title, [(name, its parameters)])] in registration order."""
    return [(title, [(name, list(registry.get(name).params.model_fields)) for name in registry.names()])
            for title, registry in SECTIONS]
