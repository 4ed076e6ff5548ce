"""Tables larger than memory: read in chunks, fitted in one pass, served through DataLoader workers.

`stream: auto` streams when the float32 feature table would take more than about half of the
memory available now; `true` always streams, `false` never does. A streamed load:

1. walks each file once, chunk by chunk (`Table.scan`), to count the rows, learn the classes and
   fit the scaler and the `missing: mean` fill values on the train rows, without holding the table;
2. gives each split as a `TableStream`, a torch IterableDataset that re-reads its chunks (each
   chunk by itself: a byte range, row group or row range) in every epoch.

Which split a row of a `path` file (or of a `train` file with `split:` fractions) goes to is a
seeded hash of its row number, so nothing is remembered per row, every row is in exactly one split,
and the split fractions hold approximately. In an epoch the train split visits its chunks in a
seeded order that changes with the epoch, shards them across DataLoader workers, and mixes rows
through a shuffle buffer; val and test rows come in file order.

With `data.weight` every served piece carries the rows' event weights too, `(x, y, w)`: read from the
weight column with each chunk, the `negative_weights` policy applied, and, in the train split, times
the `train.class_weight` factor of the row's class (`TableStream.weighed`). The first pass checks the
column (missing, NaN) and sums the train rows' weights per class (class_weight: balanced, and
class_balanced's `totals: weights`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..config import DataConfig
from ..errors import SpecError
from ..messages import few
from .dataset import Dataset, Fitted
from .labels import class_list, plain
from .resources import available_memory
from .scaler import ColumnStats, Scaler
from .splits import split_files
from .tables import Chunk, Origin, Table, choose, open_table
from .tables.columns import (
    apply_fill,
    block_length,
    check_missing,
    drop_note,
    feature_values,
    fill_note,
    target_values,
)
from .tables.weights import apply_negative, check_weight_column, negative_note, weight_values

MEMORY_SHARE = 0.5  # stream: auto streams tables whose float32 features exceed this share of free memory
CHUNK_BYTES = 8 << 20  # float32 feature bytes per chunk (csv, npy, HDF5, ROOT; parquet uses row groups)
TRANSFER_ROWS = 16384  # rows a DataLoader worker sends at a time (TableStream.transfers)
SPLITS = ("train", "val", "test")  # split codes 0, 1, 2


def should_stream(data: DataConfig) -> bool:
    """`stream: true`, or `auto` with a feature table too large for memory (never when memory is unknown)."""
    sources = _sources(data)
    if data.stream is True:
        for _, origin in sources:
            with open_table(origin) as table:
                if not table.streamable:
                    raise SpecError(f"{origin.file}: an {Path(origin.file).suffix} archive cannot be read in "
                                    "chunks; save its arrays as .npy, HDF5 or parquet, or set stream: false",
                                    "stream")
        return True
    memory = available_memory()
    if memory is None:
        return False
    size, width = 0, None
    for _, origin in sources:
        with open_table(origin) as table:
            if not table.streamable:
                return False
            width = width or len(choose(table, origin))
            size += 4 * width * (table.estimated_rows() or 0)
    return size > MEMORY_SHARE * memory


def _sources(data: DataConfig) -> list[tuple[str, Origin]]:
    """(split role, file): role "path" or "train" for the main file, "val" / "test" for whole-split files."""
    if data.path:
        return [("path", Origin(data.path, "path", data, main=True))]
    sources = [("train", Origin(data.train, "train", data, main=True))]
    sources += [(name, Origin(path, name, data, main=False)) for name, path in split_files(data).items()]
    return sources


# ----------------------------------------------------------------------------------------------
# Which split a row is in


def row_uniform(seed: int, rows: np.ndarray) -> np.ndarray:
    """A seeded hash (splitmix64) of row numbers -> floats in [0, 1), the same on every call."""
    z = rows.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) / 2.0**53


@dataclass
class FilePlan:
    """One file of a streamed data set: its chunks and how its rows are spread over the splits."""

    origin: Origin
    role: str  # "path" / "train": split by hash; "val" / "test": every row in that split
    chunks: list[Chunk]
    test: float  # fractions carved by hash (path and train files)
    val: float

    def split_codes(self, seed: int, start: int, count: int) -> np.ndarray:
        """0 (train), 1 (val) or 2 (test) for rows [start, start + count) of the file."""
        if self.role in ("val", "test"):
            return np.full(count, SPLITS.index(self.role), dtype=np.int8)
        u = row_uniform(seed, np.arange(start, start + count))
        return np.where(u < self.test, 2, np.where(u < self.test + self.val, 1, 0)).astype(np.int8)


# ----------------------------------------------------------------------------------------------
# The first pass


class _FirstPass:
    """What one walk over the files learns: rows per split, labels, statistics, missing values."""

    def __init__(self, task: str, data: DataConfig):
        self.task, self.data = task, data
        self.rows = [0, 0, 0]  # kept rows per split code
        self.labels: list[dict] = [{}, {}, {}]  # per split: plain label -> rows
        self.files: list[dict] = [{}, {}, {}]  # per split: the files its rows came from (ordered set)
        self.stats: ColumnStats | None = None
        self.nan_values: np.ndarray | None = None  # missing: mean, NaN per feature value, every split
        self.dropped: dict[str, list] = {}  # file -> [rows dropped, rows read, NaN columns mask]
        self.names: list[str] | None = None
        self.input_shape: tuple[int, ...] = ()
        self.target_width = 1
        self.weight_sums: dict = {}  # data.weight: plain label -> the train rows' weight sum
        self.negative: dict[str, list[int]] = {}  # data.weight: file -> [negative weights, rows read]

    def add(self, x: np.ndarray, y: np.ndarray, codes: np.ndarray, origin: Origin,
            w: np.ndarray | None = None) -> None:
        flat = x.reshape(len(x), -1)
        if self.stats is None:
            self.stats = ColumnStats(flat.shape[1])
            self.nan_values = np.zeros(flat.shape[1], dtype=np.int64)
            self.input_shape = x.shape[1:]
        nan = np.isnan(flat)
        keep = np.ones(len(x), dtype=bool)
        if self.data.missing == "drop":
            lost = nan.any(axis=1)
            record = self.dropped.setdefault(origin.file, [0, 0, np.zeros(flat.shape[1], dtype=bool)])
            record[0] += int(lost.sum())
            record[1] += len(x)
            record[2] |= nan.any(axis=0)
            keep = ~lost
        elif self.data.missing == "mean":
            self.nan_values += nan.sum(axis=0)
        if w is not None:
            w, negative = apply_negative(w, self.data.negative_weights)
            record = self.negative.setdefault(origin.file, [0, 0])
            record[0] += negative
            record[1] += len(w)
        for code in range(3):
            rows = keep & (codes == code)
            if not rows.any():
                continue
            self.rows[code] += int(rows.sum())
            self.files[code][origin.file] = None
            if code == 0:
                self.stats.add(flat[rows])
            if self.task == "regression":
                self.target_width = y.shape[1]
                continue
            values, inverse, counts = np.unique(y[rows], return_inverse=True, return_counts=True)
            sums = np.bincount(inverse.reshape(-1), weights=w[rows], minlength=len(values)) \
                if w is not None and code == 0 else None
            for i, (value, count) in enumerate(zip(values, counts, strict=True)):
                label = plain(value)
                self.labels[code][label] = self.labels[code].get(label, 0) + int(count)
                if sums is not None:
                    self.weight_sums[label] = self.weight_sums.get(label, 0.0) + float(sums[i])

    def notes(self, names: list[str] | None) -> list[str]:
        notes = []
        for file, (dropped, total, columns) in self.dropped.items():
            if dropped:
                notes.append(drop_note(file, dropped, total, columns, names or [Path(file).name]))
        if self.data.missing == "mean" and self.nan_values is not None and self.nan_values.any():
            names = names or [str(j) for j in range(len(self.nan_values))]
            notes.append(fill_note({names[j]: int(c) for j, c in enumerate(self.nan_values) if c}))
        for file, (negative, total) in self.negative.items():
            note = negative_note(negative, total, Path(file).name, self.data.negative_weights)
            notes += [note] if note else []
        return notes


def load_streamed(data: DataConfig, *, task: str, seed: int, fitted: Fitted | None = None,
                  chunk_rows: int | None = None, shuffle_buffer: int | None = None) -> Dataset:
    """The `data:` section as streamed splits (see the module docstring); same checks as an in-memory load."""
    fitted = fitted or Fitted()
    scaler, classes, fill = fitted.scaler, fitted.classes, fitted.fill
    sources = _sources(data)
    main = sources[0][1]
    with open_table(main) as table:
        features = choose(table, main)
    chunk_rows = chunk_rows or max(1024, min(1 << 17, CHUNK_BYTES // (4 * len(features))))
    seen = _FirstPass(task, data)
    plans = []
    for role, origin in sources:
        test = data.split.test if role in ("path", "train") and not data.test else 0.0
        val = data.split.val if role in ("path", "train") and not data.val else 0.0
        plan = FilePlan(origin, role, [], test, val)
        weight = [data.weight] if data.weight else []
        with open_table(origin) as table:
            if not origin.main:
                choose(table, origin, features)
            check_weight_column(table.names, table.kind, origin)
            for chunk, block in table.scan([*features, origin.target, *weight], chunk_rows):
                for first_row, part in _parts(block, chunk.start, chunk_rows):
                    x, names, y = _chunk_values(part, features, origin, task, first_row, check=True)
                    w = weight_values(part, origin, first_row)  # NaN or infinite: refused, naming the rows
                    seen.add(x, y, plan.split_codes(seed, first_row, len(x)), origin, w)
                    seen.names = names
                plan.chunks.append(chunk)
        plans.append(plan)
    if seen.rows[0] == 0:
        raise SpecError(f"{main.file}: no training rows (the file is empty, or every row went to val/test or "
                        "was dropped for missing values)", main.key)
    classes = _check_labels(seen, classes, data, main) if task != "regression" else None
    if data.missing == "mean" and fill is None:
        fill = _fill_values(seen, main)
    if scaler is None and data.scale != "none":
        scaler = seen.stats.scaler(data.scale)
    spec = _Spec(features, task, seed, classes, scaler, fill, data.weight, data.negative_weights)
    splits = {}
    for code, name in enumerate(SPLITS):
        if code == 0 or seen.rows[code]:
            splits[name] = TableStream(plans, code, spec, seen.rows[code], shuffle=code == 0,
                                       buffer=shuffle_buffer or chunk_rows, part_rows=chunk_rows)
    counts = [seen.labels[0].get(c, 0) for c in classes] if classes is not None else None
    sums = [seen.weight_sums.get(c, 0.0) for c in classes] if classes is not None and data.weight else None
    table_bytes = 4 * sum(seen.rows) * math.prod(seen.input_shape)
    notes = [f"stream: reading {' + '.join(Path(p.origin.file).name for p in plans)} in "
             f"{sum(len(p.chunks) for p in plans)} chunks ({_size(table_bytes)} of float32 features)",
             *seen.notes(seen.names)]
    source = data.path or " + ".join(f for f in (data.train, data.val, data.test) if f)
    return Dataset(splits, task, tuple(seen.input_shape), seen.names, classes, scaler, source, counts=counts,
                   notes=notes, fill=fill, weight_sums=sums)


def _parts(block, start: int, rows: int):
    """A scanned block as (first row, frame) parts of `rows` rows: the first pass's copies of a parquet row
    group (float32, NaN masks, the train rows for the statistics) took 10x the group's features whole."""
    if not isinstance(block, pd.DataFrame) or len(block) <= rows:
        yield start, block
        return
    for offset in range(0, len(block), rows):
        yield start + offset, block.iloc[offset:offset + rows]


def _size(nbytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if nbytes < 1024:
            return f"{nbytes:.0f} bytes" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} GiB"


def _chunk_values(block, features: list[str], origin: Origin, task: str, first_row: int, *, check: bool):
    """One chunk's features (NaN kept unless missing: error refuses them) and target."""
    block_length(block, features, origin)
    x, names = feature_values(block, features, origin, first_row)
    if check:
        check_missing(x, names or features, origin, first_row)
    y = target_values(block, origin, task, first_row, check_positive=False)
    return x, names, y


def _check_labels(seen: _FirstPass, classes: list | None, data: DataConfig, main: Origin) -> list:
    train = seen.labels[0]
    if data.positive is not None and not train.get(1):
        raise SpecError(f"{main.file}: none of the positive labels {sorted(map(str, data.positive))} occur in "
                        f"the target '{main.target}' of the training rows", "positive")
    if classes is None:
        classes = class_list(np.array(list(train), dtype=object if _mixed(train) else None))
    known = set(classes)
    for code in (0, 1, 2):
        unknown = [label for label in seen.labels[code] if label not in known]
        if unknown:
            raise SpecError(f"{' + '.join(seen.files[code])}: label(s) {few(unknown, repr)} in the "
                            f"{SPLITS[code]} rows are not among the training classes: {few(classes, repr, 20)}",
                            "target")
    return list(classes)


def _mixed(labels: dict) -> bool:
    return len({type(v) for v in labels}) > 1


def _fill_values(seen: _FirstPass, main: Origin) -> dict[str, float]:
    names = seen.names
    if names is None:
        raise SpecError("missing: mean fills table columns with their means, but these rows are images; use "
                        "missing: drop", "missing")
    empty = [names[j] for j in np.flatnonzero(seen.stats.n == 0)]
    if empty:
        raise SpecError(f"{main.file}: feature '{empty[0]}' has no values in the training rows, so missing: "
                        "mean has nothing to fill it with; drop the column", main.feature_key(empty[0]))
    return {name: float(m) for name, m in zip(names, seen.stats.mean, strict=True)}


# ----------------------------------------------------------------------------------------------
# Serving a split


@dataclass
class _Spec:
    """How every chunk is turned into samples: the fitted state shared by the splits."""

    features: list[str]
    task: str
    seed: int
    classes: list | None
    scaler: Scaler | None
    fill: dict[str, float] | None
    weight: str | None = None  # data.weight: the column of event weights
    negative_weights: str = "keep"


class TableStream(IterableDataset):
    """One split of a streamed table: `(x, y)` samples, x a float32 tensor, y a class id or (k,) tensor;
    `(x, y, w)` with event weights (data.weight, or class factors: `weighted`), w float64.

    `len()` is the split's number of rows. For the train split, `set_epoch(e)` picks the chunk
    order and the shuffle for epoch e (the same for the same seed and epoch); chunks are shared out
    across DataLoader workers, each chunk to one worker.
    """

    def __init__(self, plans: list[FilePlan], code: int, spec: _Spec, rows: int, *, shuffle: bool,
                 buffer: int, part_rows: int):
        self.plans, self.code, self.spec, self.rows = plans, code, spec, rows
        self.shuffle, self.buffer = shuffle, buffer
        self.part_rows = part_rows  # rows converted at a time from a larger chunk (Table.read_parts)
        # Shared memory, so DataLoader workers that outlive an epoch (persistent_workers) see set_epoch.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.index = {c: i for i, c in enumerate(spec.classes)} if spec.classes is not None else None
        self.batch_size: int | None = None  # None: one sample at a time; see batches()
        self.per_transfer = 1  # batches a DataLoader worker sends as one; see transfers()
        self.shard = (0, 1)  # data-parallel training: (rank, world size); see sharded()
        self.class_factors: np.ndarray | None = None  # train.class_weight: a factor per class id; see weighed()

    @property
    def split(self) -> str:
        return SPLITS[self.code]

    def __len__(self) -> int:
        return self.rows

    @property
    def weighted(self) -> bool:
        """Whether the samples carry event weights (a third item)."""
        return self.spec.weight is not None or self.class_factors is not None

    def weighed(self, factors: np.ndarray | None) -> TableStream:
        """A view whose rows' weights are times their class's factor (train.class_weight; None: the events' own
        weights again); shares the epoch counter, and leaves this split (a tuning worker's cached one) as it was."""
        view = copy.copy(self)
        view.class_factors = None if factors is None else np.asarray(factors, dtype=np.float64)
        return view

    def head(self, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """This split's first `rows` rows in file order, as arrays (x, y, w): a sample of a streamed split
        (the overtraining check's train side) without a pass over all of it."""
        xs, ys, ws, have = [], [], [], 0
        for piece in self.in_file_order()._pieces():
            xs.append(piece[0][:rows - have])
            ys.append(piece[1][:rows - have])
            ws.append(piece[2][:rows - have] if len(piece) > 2 else None)
            have += len(xs[-1])
            if have >= rows:
                break
        w = np.concatenate(ws) if ws and ws[0] is not None else None
        return np.concatenate(xs), np.concatenate(ys), w

    def in_file_order(self) -> TableStream:
        """A view serving this split's rows in file order (unshuffled, unsharded); read it with no DataLoader
        workers, whose batches would interleave."""
        view = copy.copy(self)
        view.shuffle, view.shard = False, (0, 1)
        return view

    def file_rows(self) -> dict[str, np.ndarray]:
        """file -> the 0-based row numbers of this split's rows in it, in the order `in_file_order` serves them
        (predict --split passes the file's other columns through next to them). Only `missing: drop` reads
        the chunks again (for the rows it drops); otherwise the split hash alone says which rows are here."""
        found = {}
        drop = self.plans[0].origin.data.missing == "drop"
        for f, plan in enumerate(self.plans):
            if not self._serves(plan):
                continue
            rows = []
            with open_table(plan.origin) as table:
                for chunk in plan.chunks:
                    parts = table.read_parts(chunk, self._columns(f), self.part_rows) if drop else \
                        [(chunk.start, None)]
                    for first_row, block in parts:
                        count = chunk.rows if block is None else len(block)
                        keep = plan.split_codes(self.spec.seed, first_row, count) == self.code
                        if block is not None:
                            x = _chunk_values(block, self.spec.features, plan.origin, self.spec.task, first_row,
                                              check=False)[0]
                            keep &= ~np.isnan(x.reshape(len(x), -1)).any(axis=1)
                        rows.append(first_row + np.flatnonzero(keep))
            if rows and sum(map(len, rows)):
                found[plan.origin.file] = np.concatenate(rows)
        return found

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = epoch

    def work(self, epoch: int, worker: int = 0, workers: int = 1) -> list[tuple[int, int]]:
        """(file, chunk) pairs a worker reads in an epoch: a seeded order for the train split, file order else."""
        work = [(f, c) for f, plan in enumerate(self.plans) if self._serves(plan) for c in range(len(plan.chunks))]
        if self.shuffle:
            order = np.random.default_rng([self.spec.seed, epoch]).permutation(len(work))
            work = [work[i] for i in order]
        rank, ranks = self.shard
        return work[rank::ranks][worker::workers]

    def _serves(self, plan: FilePlan) -> bool:
        return plan.role in ("path", "train") or plan.role == self.split

    def batches(self, batch_size: int) -> TableStream:
        """This split served as `(x, y)` tensor batches of `batch_size` rows (for `DataLoader(batch_size=None)`),
        in the same order as its samples; the last batch of each worker may be shorter.

        One sample at a time, the rows' Python tuples and their collation cost more per row than a
        training step of the FFNN at batch 1024 (benchmarks/RESULTS.md, 2026-12-02).
        """
        view = copy.copy(self)  # shares the epoch counter: set_epoch on either reaches both
        view.batch_size = batch_size
        return view

    def transfers(self) -> TableStream:
        """These batches sent from a DataLoader worker `per_transfer` at a time (up to TRANSFER_ROWS rows, at most a
        part's), as one tensor a field; `ungrouped` cuts them into the same batches again.

        Each tensor a worker sends is a round trip to it (torch passes the shared memory's file descriptor
        over a socket), which waits for the worker's GIL while it parses the next part: 2.6 ms a batch of
        1024 rows, more than the FFNN's step (benchmarks/RESULTS.md, 2026-12-03).

        With several workers the DataLoader takes a transfer from each in turn, so training sees up to
        `per_transfer` batches of one worker, then of the next: the same batches as before, in an order
        that is as seeded as before but interleaves the workers' shuffled streams more coarsely."""
        view = copy.copy(self)
        rows = min(TRANSFER_ROWS, self.part_rows)  # no more than a part: a wide table's parts are kept small
        view.per_transfer = max(1, rows // (self.batch_size or rows))
        return view

    def chunks(self) -> int:
        """The chunks this split is read in, over all its files."""
        return sum(len(plan.chunks) for plan in self.plans if self._serves(plan))

    def sharded(self, rank: int, ranks: int) -> TableStream:
        """The chunks rank `rank` of `ranks` reads (every `ranks`-th of the epoch's order), as a view that shares
        the epoch counter; the ranks' views together read every chunk once."""
        view = copy.copy(self)
        view.shard = (rank, ranks)
        return view

    @property
    def prefetch(self) -> int:
        """Batches (or transfers of them) a DataLoader worker may run ahead (its prefetch_factor): two parts' worth, so it reads and
        parses the next part while training consumes this one. Four batches, torch's usual, left
        training waiting ~0.1 s at every csv chunk (1.6x the in-memory epoch on an idle machine)."""
        rows = (self.batch_size or 1) * self.per_transfer
        return max(2 if self.per_transfer > 1 else 4, 2 * -(-self.part_rows // rows))

    def __iter__(self):
        pieces = self._pieces()
        if self.batch_size is None:
            for piece in pieces:
                yield from _samples(*piece)
        else:
            yield from _batched(pieces, self.batch_size * self.per_transfer)

    def _pieces(self):
        """The rows this worker serves in an epoch, as consecutive (x, y) or (x, y, w) arrays, in serving order."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch = int(self._epoch[0])
        rng = np.random.default_rng([self.spec.seed, epoch, worker, 7])
        tables: dict[int, Table] = {}
        pool = None
        try:
            for f, c in self.work(epoch, worker, workers):
                if f not in tables:
                    tables[f] = open_table(self.plans[f].origin)
                parts = tables[f].read_parts(self.plans[f].chunks[c], self._columns(f), self.part_rows)
                for first_row, block in parts:
                    piece = self._part(self.plans[f], first_row, block)
                    if not self.shuffle:
                        yield piece
                        continue
                    if pool is not None:
                        piece = tuple(np.concatenate([held, new]) for held, new in zip(pool, piece, strict=True))
                    order = rng.permutation(len(piece[0]))
                    # Keep up to `buffer` rows (at most half) back to mix with the next part's rows.
                    cut = len(order) - min(self.buffer, len(order) // 2)
                    yield tuple(a[order[:cut]] for a in piece)
                    pool = tuple(a[order[cut:]] for a in piece)
            if pool is not None:
                yield pool
        finally:
            for table in tables.values():
                table.close()

    def _columns(self, f: int) -> list[str]:
        return [*self.spec.features, self.plans[f].origin.target, *([self.spec.weight] if self.spec.weight else [])]

    def _part(self, plan: FilePlan, first_row: int, block) -> tuple[np.ndarray, ...]:
        """This split's rows of a part of a chunk, prepared as in training: missing values, scaling, class ids,
        and their event weights when the split is weighted."""
        spec, origin = self.spec, plan.origin
        x, names, y = _chunk_values(block, spec.features, origin, spec.task, first_row, check=False)
        keep = plan.split_codes(spec.seed, first_row, len(x)) == self.code
        flat = x.reshape(len(x), -1)
        if origin.data.missing == "drop":
            keep &= ~np.isnan(flat).any(axis=1)
        x, y = x[keep], y[keep]
        w = None
        if self.weighted:
            w = np.ones(len(keep)) if spec.weight is None else weight_values(block, origin, first_row)
            w = apply_negative(w[keep], spec.negative_weights)[0]
        if spec.fill is not None:
            apply_fill(x.reshape(len(x), -1), names, spec.fill, origin)
        if spec.scaler is not None:
            x = spec.scaler.transform(x)
        if self.index is not None and len(y):
            values, inverse = np.unique(y, return_inverse=True)
            y = np.array([self.index[plain(v)] for v in values], dtype=np.int64)[inverse.reshape(-1)]
        x = np.ascontiguousarray(x, dtype=np.float32)
        if w is None:
            return x, y
        if self.class_factors is not None:
            w = w * self.class_factors[y]
        return x, y, w


def ungrouped(transfers, batch_size: int):
    """The batches of `batch_size` rows in each transfer (TableStream.transfers): every batch full but the last."""
    for group in transfers:
        yield from zip(*(t.split(batch_size) for t in group))


def _batched(pieces, size: int):
    """Consecutive rows of the (x, y) or (x, y, w) pieces as tensor batches of `size` rows, the last one shorter."""
    held: list[tuple[np.ndarray, ...]] = []
    count = 0
    for piece in pieces:
        while len(piece[0]):
            take = min(size - count, len(piece[0]))
            held.append(tuple(a[:take] for a in piece))
            count += take
            piece = tuple(a[take:] for a in piece)
            if count == size:
                yield _batch(held)
                held, count = [], 0
    if held:
        yield _batch(held)


def _batch(parts: list[tuple[np.ndarray, ...]]) -> tuple[torch.Tensor, ...]:
    """One batch from its parts, in the dtypes a DataLoader collates samples to (int64 class ids, float32
    values and weights). A single part stays a view of its piece: its tensor's storage is the view's rows only."""
    x = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    y = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    batch = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32 if y.dtype.kind == "f" else np.int64,
                                                           copy=False))
    if len(parts[0]) == 2:
        return batch
    w = np.concatenate([p[2] for p in parts]) if len(parts) > 1 else parts[0][2]
    return *batch, torch.from_numpy(w.astype(np.float64, copy=False))  # float64: evaluate reports them unrounded


def _samples(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None):
    xt = torch.from_numpy(x)
    wt = None if w is None else torch.from_numpy(w.astype(np.float64, copy=False))
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)) if y.dtype.kind == "f" else None
    for i in range(len(xt)):
        label = yt[i] if yt is not None else int(y[i])
        yield (xt[i], label) if wt is None else (xt[i], label, wt[i])
