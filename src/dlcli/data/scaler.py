"""Scaling, fitted on the training rows only: x' = (x - offset) / scale, and the statistics it is fitted from.

`Scaler.fit` walks an array in memory; `ChannelStats` (images) and `ColumnStats` (streamed tables)
gather the same statistics chunk by chunk, for splits read in pieces.
"""

from __future__ import annotations

import numpy as np

from .tables.columns import flat_rows, row_blocks


class Scaler:
    """x' = (x - offset) / scale, with offset and scale from the train rows.

    per="feature": one offset and scale per value of a row (a table's columns; each pixel of
    digits' 8x8 images on its own). per="channel": one per channel, axis 1 of (n, C, H, W), over
    every pixel of the train images, as torchvision's Normalize does.
    standard: offset = mean, scale = std; minmax: offset = min, scale = max - min. A constant
    feature gets scale 1, so it maps to 0 instead of dividing by zero.
    """

    KINDS = ("standard", "minmax")
    PER = ("feature", "channel")

    def __init__(self, kind: str, offset, scale, per: str = "feature"):
        if kind not in self.KINDS:
            raise ValueError(f"scaler kind must be one of {', '.join(self.KINDS)}, got {kind!r}")
        if per not in self.PER:
            raise ValueError(f"scaler per must be one of {', '.join(self.PER)}, got {per!r}")
        self.kind = kind
        self.per = per
        self.offset = np.asarray(offset, dtype=np.float32).reshape(-1)
        self.scale = np.asarray(scale, dtype=np.float32).reshape(-1)
        if self.offset.shape != self.scale.shape:
            raise ValueError(f"offset and scale differ in size: {self.offset.size} vs {self.scale.size}")

    @classmethod
    def fit(cls, kind: str, x: np.ndarray, per: str = "feature") -> Scaler:
        if kind not in cls.KINDS:
            raise ValueError(f"scaler kind must be one of {', '.join(cls.KINDS)}, got {kind!r}")
        if per == "channel":
            stats = ChannelStats()
            for block in row_blocks(x):
                stats.add(block)
            return stats.scaler(kind)
        flat = flat_rows(x)
        if len(flat) == 0:
            raise ValueError("cannot fit a scaler on zero rows")
        # Two passes over row blocks, accumulating in float64: precise for large splits, and never a
        # float64 copy of the whole table (np.std would make one for the deviations).
        if kind == "standard":
            offset = sum(b.sum(axis=0, dtype=np.float64) for b in row_blocks(flat)) / len(flat)
            squares = sum(squared_deviations(b, offset) for b in row_blocks(flat))
            spread = np.sqrt(squares / len(flat))
        else:
            offset = flat.min(axis=0).astype(np.float64)
            spread = flat.max(axis=0) - offset
        return cls(kind, offset, np.where(spread > 0, spread, 1.0))

    def transform(self, x: np.ndarray, *, inplace: bool = False) -> np.ndarray:
        """The scaled values: a new float32 array, or, with `inplace`, x itself where it is a writable float32
        array (so a large table is not held twice)."""
        x = np.asarray(x, dtype=np.float32)
        inplace = inplace and x.flags.writeable and x.flags.c_contiguous
        if self.per == "channel":
            if x.ndim < 2 or x.shape[1] != self.offset.size:
                raise ValueError(f"the scaler was fitted on {self.offset.size} channels, got shape {list(x.shape)}")
            shape = (1, -1) + (1,) * (x.ndim - 2)  # broadcast over the batch and pixel axes
            out = np.subtract(x, self.offset.reshape(shape), out=x if inplace else None)
            out /= self.scale.reshape(shape)
            return out
        flat = flat_rows(x)
        if flat.shape[1] != self.offset.size:
            raise ValueError(f"the scaler was fitted on {self.offset.size} values a row, got {flat.shape[1]}")
        out = np.subtract(flat, self.offset, out=flat if inplace else None)
        out /= self.scale
        return out.reshape(x.shape)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "per": self.per, "offset": self.offset.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Scaler:
        try:
            # Runs stored before per-channel scaling existed have no "per": they were per feature.
            return cls(d["kind"], d["offset"], d["scale"], d.get("per", "feature"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a stored scaler (needs kind, offset, scale): {exc}") from None

    def __repr__(self) -> str:
        unit = "channels" if self.per == "channel" else "values per row"
        return f"Scaler({self.kind!r}, {self.offset.size} {unit})"


def squared_deviations(block: np.ndarray, mean: np.ndarray) -> np.ndarray:
    deviations = block - mean  # float64, one block's worth
    return np.square(deviations, out=deviations).sum(axis=0)


class ChannelStats:
    """Per-channel count, mean, squared deviations, min and max, gathered chunk by chunk.

    Chunks are merged with Chan et al.'s pairwise update in float64, so a split read in pieces
    (from files, or too large for a float64 copy) gets the same mean and std as one pass would,
    without the cancellation of sum-of-squares formulas.
    """

    def __init__(self):
        self.n = 0
        self.mean = self.m2 = self.low = self.high = None

    def add(self, x) -> None:
        """A chunk shaped (n, C, ...): any numeric array or tensor."""
        x = np.asarray(x)
        if x.ndim < 2 or x.shape[0] == 0:
            return
        values = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1).astype(np.float64)
        count = values.shape[1]
        mean = values.mean(axis=1)
        m2 = np.square(values - mean[:, None]).sum(axis=1)
        low, high = values.min(axis=1), values.max(axis=1)
        if self.n == 0:
            self.n, self.mean, self.m2, self.low, self.high = count, mean, m2, low, high
            return
        if mean.shape != self.mean.shape:
            raise ValueError(f"chunks differ in channels: {self.mean.size} vs {mean.size}")
        total = self.n + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + np.square(delta) * (self.n * count / total)
        self.low, self.high = np.minimum(self.low, low), np.maximum(self.high, high)
        self.n = total

    def scaler(self, kind: str) -> Scaler:
        if self.n == 0:
            raise ValueError("cannot fit a scaler on zero rows")
        if kind == "standard":
            offset, spread = self.mean, np.sqrt(self.m2 / self.n)
        else:
            offset, spread = self.low, self.high - self.low
        return Scaler(kind, offset, np.where(spread > 0, spread, 1.0), per="channel")


class ColumnStats:
    """Per-column count, mean, squared deviations, min and max of the values present (NaN left out).

    Chunks are merged with Chan et al.'s pairwise update in float64, so the result matches one pass
    over the whole column. `rows` counts every row, so a column whose missing values are filled with
    its mean has std sqrt(m2 / rows): filled values sit at the mean and add no spread.
    """

    def __init__(self, width: int):
        self.rows = 0
        self.n = np.zeros(width)
        self.mean = np.zeros(width)
        self.m2 = np.zeros(width)
        self.low = np.full(width, np.inf)
        self.high = np.full(width, -np.inf)

    def add(self, x: np.ndarray) -> None:
        self.rows += len(x)
        present = ~np.isnan(x)
        count = present.sum(axis=0)
        values = np.where(present, x, 0).astype(np.float64)
        mean = np.divide(values.sum(axis=0), count, out=np.zeros(x.shape[1]), where=count > 0)
        m2 = np.square(np.where(present, values - mean, 0)).sum(axis=0)
        total = self.n + count
        share = np.divide(count, total, out=np.zeros(x.shape[1]), where=total > 0)
        delta = mean - self.mean
        self.m2 += m2 + np.square(delta) * self.n * share
        self.mean += delta * share
        self.n = total
        self.low = np.minimum(self.low, np.where(present, x, np.inf).min(axis=0, initial=np.inf))
        self.high = np.maximum(self.high, np.where(present, x, -np.inf).max(axis=0, initial=-np.inf))

    def scaler(self, kind: str) -> Scaler:
        if kind == "standard":
            offset, spread = self.mean, np.sqrt(self.m2 / max(self.rows, 1))
        else:
            offset, spread = self.low, self.high - self.low
        return Scaler(kind, offset, np.where(spread > 0, spread, 1.0))
