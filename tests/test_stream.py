"""stream.py: tables read chunk by chunk, served through DataLoader workers."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from dlcli.config import DataConfig
from dlcli.data import Scaler, in_memory, load_dataset, stream
from dlcli.engine.batches import Batches
from dlcli.errors import SpecError

N = 1500


def table(n=N, seed=0):
    """Row id (to follow rows through splits), three features, string labels in unequal shares."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"rowid": np.arange(n), "a": rng.normal(5, 2, n), "b": rng.uniform(0, 9, n),
                         "c": rng.integers(0, 4, n), "y": rng.choice(["b", "s", "t"], n, p=[0.5, 0.3, 0.2])})


@pytest.fixture
def csv(tmp_path):
    table().to_csv(tmp_path / "t.csv", index=False)
    return str(tmp_path / "t.csv")


def streamed(seed=0, chunk_rows=100, task="multiclass", **data):
    return stream.load_streamed(DataConfig(stream=True, **data), task=task, seed=seed, chunk_rows=chunk_rows,
                                shuffle_buffer=40)


def rows_of(split, **loader):
    """Every sample of a split, in the order served: (x (n, d), y (n,))."""
    xs, ys = [], []
    for xb, yb in DataLoader(split, batch_size=64, **loader):
        xs.append(xb.numpy())
        ys.append(yb.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def test_streamed_load_matches_the_in_memory_one(csv):
    memory = load_dataset(DataConfig(path=csv, target="y", scale="standard", stream=False), task="multiclass",
                          seed=0)
    ds = streamed(path=csv, target="y", scale="standard")
    assert not in_memory(ds.splits["train"]) and len(ds.splits["train"]) == N
    assert ds.classes == memory.classes == ["b", "s", "t"]
    assert ds.counts == memory.class_counts() and ds.class_counts() == ds.counts
    assert ds.feature_names == memory.feature_names and ds.input_shape == (4,)
    np.testing.assert_allclose(ds.scaler.offset, memory.scaler.offset, rtol=1e-6)
    np.testing.assert_allclose(ds.scaler.scale, memory.scaler.scale, rtol=1e-5)
    x, y = rows_of(ds.splits["train"])
    order = np.argsort(memory.splits["train"][0][:, 0])
    np.testing.assert_allclose(x[np.argsort(x[:, 0])], memory.splits["train"][0][order], rtol=1e-5, atol=1e-6)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert ds.notes[0].startswith("stream: reading t.csv in 15 chunks")


def test_every_row_in_exactly_one_split_with_the_scaler_fitted_on_train_rows(csv):
    ds = streamed(path=csv, target="y", split={"val": 0.2, "test": 0.1})
    ids = {name: rows_of(split)[0][:, 0].astype(int) for name, split in ds.splits.items()}
    assert sorted(np.concatenate(list(ids.values()))) == list(range(N))
    for name, share in (("val", 0.2), ("test", 0.1)):
        assert len(ids[name]) == len(ds.splits[name]) and abs(len(ids[name]) - share * N) < 4 * np.sqrt(N * share)
    scaled = streamed(path=csv, target="y", split={"val": 0.2, "test": 0.1}, scale="standard")
    raw_train = table().loc[ids["train"], ["rowid", "a", "b", "c"]].to_numpy(np.float32)
    reference = Scaler.fit("standard", raw_train)
    np.testing.assert_allclose(scaled.scaler.offset, reference.offset, rtol=1e-6)
    np.testing.assert_allclose(scaled.scaler.scale, reference.scale, rtol=1e-5)
    labels = table().loc[ids["train"], "y"]
    assert scaled.counts == [int((labels == c).sum()) for c in scaled.classes]
    again = streamed(path=csv, target="y", split={"val": 0.2, "test": 0.1})
    assert np.array_equal(rows_of(again.splits["test"])[0][:, 0], ids["test"])  # same seed: same split


def test_workers_share_the_chunks_and_epochs_reshuffle(csv):
    train = streamed(path=csv, target="y").splits["train"]
    orders = {}
    for epoch in (0, 1):
        train.set_epoch(epoch)
        ids = rows_of(train, num_workers=2)[0][:, 0].astype(int)
        assert sorted(ids) == list(range(N))  # every train row once per epoch, across both workers
        orders[epoch] = ids
    assert not np.array_equal(orders[0], orders[1])
    train.set_epoch(0)
    assert np.array_equal(rows_of(train, num_workers=2)[0][:, 0], orders[0])  # same seed + epoch: same order
    fresh = streamed(path=csv, target="y").splits["train"]
    fresh.set_epoch(1)
    assert np.array_equal(rows_of(fresh, num_workers=2)[0][:, 0], orders[1])
    # Workers kept across epochs (persistent_workers) still see the epoch set in the main process.
    loader = DataLoader(fresh, batch_size=64, num_workers=2, persistent_workers=True)
    for epoch in (0, 1):
        fresh.set_epoch(epoch)
        ids = torch.cat([xb[:, 0] for xb, _ in loader]).numpy()
        assert np.array_equal(ids, orders[epoch])


def test_batches_serve_the_samples_rows_in_the_same_order(csv, tmp_path):
    """batches(b): the rows, order and dtypes of one sample at a time, in (b, ...) tensors; Batches uses it."""
    train = streamed(path=csv, target="y").splits["train"]
    train.set_epoch(2)
    x, y = rows_of(train)
    batched = train.batches(64)
    got = list(batched)
    assert [len(xb) for xb, _ in got] == [64] * (N // 64) + [N % 64]  # pieces of ~60 rows joined across chunks
    np.testing.assert_array_equal(torch.cat([xb for xb, _ in got]).numpy(), x)
    np.testing.assert_array_equal(torch.cat([yb for _, yb in got]).numpy(), y)
    assert got[0][0].dtype == torch.float32 and got[0][1].dtype == torch.int64 and train.batch_size is None
    assert train.batches(10).prefetch == 20  # a worker runs two parts (chunk_rows: 100) ahead
    batched.set_epoch(3)  # the view shares the epoch with its split
    train_3 = rows_of(train)[0]
    assert not np.array_equal(train_3, x) and np.array_equal(torch.cat([xb for xb, _ in batched]).numpy(), train_3)
    loader = Batches(train, "multiclass", torch.device("cpu"), 100, shuffle=True, workers=0)
    xs = [xb for xb, _ in loader.epoch(3)]
    assert len(xs) == len(loader) == 15 and np.array_equal(torch.cat(xs).numpy(), train_3)
    df = table(300).assign(y=lambda d: d["a"] * 2)
    df.to_csv(tmp_path / "r.csv", index=False)
    values = streamed(task="regression", path=str(tmp_path / "r.csv"), target="y").splits["train"]
    (xb, yb), = list(values.batches(300))
    assert yb.dtype == torch.float32 and yb.shape == (300, 1)
    np.testing.assert_allclose(yb[:, 0].numpy(), xb[:, 1].numpy() * 2, rtol=1e-5)


def test_a_worker_sends_batches_in_groups_that_cut_into_the_same_batches(csv, monkeypatch):
    """transfers(): a DataLoader worker sends k batches as one (one shared-memory hand-over, not k); ungrouped
    cuts them into the batches batches() serves, with a DataLoader worker in between as in training."""
    monkeypatch.setattr(stream, "TRANSFER_ROWS", 200)
    assert streamed(path=csv, target="y").splits["train"].batches(64).transfers().per_transfer == 1  # parts: 100 rows
    train = streamed(path=csv, target="y", chunk_rows=500).splits["train"]
    train.set_epoch(1)
    want = list(train.batches(64))
    sent = train.batches(64).transfers()
    assert sent.per_transfer == 3 and [len(g[0]) for g in sent] == [192] * (N // 192) + [N % 192]
    assert sent.prefetch == 6  # two parts (500 rows) ahead, in transfers of 192
    loader = Batches(train, "multiclass", torch.device("cpu"), 64, shuffle=True, workers=1)
    got = list(loader.epoch(1))
    assert loader.loader.dataset.per_transfer == 3  # the worker sent groups, which were cut again
    assert [len(xb) for xb, _ in got] == [len(xb) for xb, _ in want] and len(got) == len(loader)
    for (xb, yb), (wx, wy) in zip(got, want, strict=True):
        assert torch.equal(xb, wx) and torch.equal(yb, wy)


def test_a_parquet_row_group_is_converted_in_parts_with_its_row_numbers(csv, tmp_path):
    table().to_parquet(tmp_path / "t.parquet", index=False)  # one row group of all 1500 rows
    ds = streamed(path=str(tmp_path / "t.parquet"), target="y", split={"test": 0.2})
    plan = ds.splits["train"].plans[0]
    assert len(plan.chunks) == 1
    with stream.open_table(plan.origin) as t:
        parts = list(t.read_parts(plan.chunks[0], ["rowid", "y"], 100))
    assert [first for first, _ in parts] == list(range(0, N, 100)) and {len(b) for _, b in parts} == {100}
    np.testing.assert_array_equal(np.concatenate([b["rowid"] for _, b in parts]), np.arange(N))
    from_csv = streamed(path=csv, target="y", split={"test": 0.2})  # the split hashes the file's row numbers
    for name in ("train", "test"):
        ids = np.sort(rows_of(ds.splits[name])[0][:, 0])
        np.testing.assert_array_equal(ids, np.sort(rows_of(from_csv.splits[name])[0][:, 0]))


def test_chunk_order_is_shuffled_and_rows_mixed_within(csv):
    train = streamed(path=csv, target="y").splits["train"]
    train.set_epoch(3)
    ids = rows_of(train)[0][:, 0].astype(int)
    chunks = ids // 100  # csv chunks of 100 lines: the chunk each row came from
    assert sorted(ids) == list(range(N))
    visited = list(dict.fromkeys(chunks))
    assert len(visited) == 15 and visited != sorted(visited)
    assert not np.array_equal(np.sort(ids[:60]), ids[:60])  # rows shuffled within a chunk
    assert len(set(chunks[60:120])) == 2  # the shuffle buffer carries rows over into the next chunk


def test_auto_streams_only_when_the_table_would_not_fit(csv, monkeypatch):
    data = DataConfig(path=csv, target="y")
    monkeypatch.setattr(stream, "available_memory", lambda: 10_000)  # the table takes ~24 kB as float32
    assert not in_memory(load_dataset(data, task="multiclass", seed=0).splits["train"])
    monkeypatch.setattr(stream, "available_memory", lambda: 10**9)
    assert in_memory(load_dataset(data, task="multiclass", seed=0).splits["train"])
    monkeypatch.setattr(stream, "available_memory", lambda: None)  # unknown: never stream
    assert in_memory(load_dataset(data, task="multiclass", seed=0).splits["train"])
    assert stream.available_memory.__module__ is not None


def write(df, tmp_path, fmt):
    if fmt == "parquet":
        df.to_parquet(tmp_path / "t.parquet", index=False, row_group_size=128)
        return {"path": str(tmp_path / "t.parquet")}
    numeric = df.assign(y=df["y"].map({"b": 0, "s": 1, "t": 2}))
    if fmt == "npy":
        np.save(tmp_path / "t.npy", numeric.to_numpy(np.float64))
        return {"path": str(tmp_path / "t.npy"), "target": "4", "features": ["0", "1", "2", "3"]}
    if fmt == "h5":
        with h5py.File(tmp_path / "t.h5", "w") as f:
            for name in numeric.columns:
                f[f"events/{name}"] = numeric[name].to_numpy()
        return {"path": str(tmp_path / "t.h5"), "key": "events"}
    import uproot

    with uproot.recreate(tmp_path / "t.root") as f:
        tree = f.mktree("events", {name: numeric[name].dtype for name in numeric.columns})
        tree.extend({name: numeric[name].to_numpy() for name in numeric.columns})
    return {"path": str(tmp_path / "t.root"), "tree": "events"}


@pytest.mark.parametrize("fmt", ["parquet", "npy", "h5", "root"])
def test_every_streamable_format(tmp_path, fmt):
    df = table(400)
    data = {"target": "y", **write(df, tmp_path, fmt), "split": {"val": 0.25}, "scale": "minmax"}
    memory = load_dataset(DataConfig(**data, stream=False), task="multiclass", seed=1)
    ds = streamed(seed=1, **data)
    x, y = rows_of(ds.splits["train"], num_workers=0)
    vx, _ = rows_of(ds.splits["val"])
    assert len(x) + len(vx) == 400 and len(x) == len(ds.splits["train"])
    assert len(ds.classes) == 3 and sum(ds.counts) == len(x)
    everything = np.concatenate([*(split[0] for split in memory.splits.values())])
    assert ds.scaler.kind == "minmax" and x.min() >= -1e-6 and x.max() <= 1 + 1e-6
    raw = ds.scaler.offset + np.concatenate([x, vx]) * ds.scaler.scale
    raw_memory = memory.scaler.offset + everything * memory.scaler.scale
    np.testing.assert_allclose(raw[np.argsort(raw[:, 0])], raw_memory[np.argsort(raw_memory[:, 0])], rtol=1e-5,
                               atol=1e-4)


def test_missing_values_when_streaming(tmp_path):
    df = table(600)
    df.loc[::7, "a"] = np.nan
    df.loc[::50, "c"] = np.nan
    df.to_csv(tmp_path / "t.csv", index=False)
    data = dict(path=str(tmp_path / "t.csv"), target="y", scale="standard")
    for missing in ("drop", "mean"):
        memory = load_dataset(DataConfig(**data, missing=missing, stream=False), task="multiclass", seed=0)
        ds = streamed(**data, missing=missing)
        assert ds.notes[1:] == memory.notes and len(ds.splits["train"]) == len(memory.splits["train"][0])
        np.testing.assert_allclose(ds.scaler.offset, memory.scaler.offset, rtol=1e-5)
        np.testing.assert_allclose(ds.scaler.scale, memory.scaler.scale, rtol=1e-4)
        if missing == "mean":
            assert ds.fill == pytest.approx(memory.fill)
            x = rows_of(ds.splits["train"])[0]
            assert not np.isnan(x).any()
    with pytest.raises(SpecError, match="missing \\(NaN\\)") as info:
        streamed(**data)
    assert "row(s) 1, 8, 15" in str(info.value)


def test_regression_targets_and_errors(tmp_path, csv):
    df = table(300).assign(y=lambda d: d["a"] * 2)
    df.to_csv(tmp_path / "r.csv", index=False)
    ds = streamed(task="regression", path=str(tmp_path / "r.csv"), target="y", drop=["c"])
    x, y = rows_of(ds.splits["train"])
    assert ds.classes is None and ds.target_width == 1 and y.shape == (300, 1) and y.dtype == np.float32
    np.testing.assert_allclose(y[:, 0], x[:, 1] * 2, rtol=1e-5)
    np.savez(tmp_path / "t.npz", x=np.ones((5, 2)), y=np.arange(5))
    with pytest.raises(SpecError, match="cannot be read in chunks") as info:
        load_dataset(DataConfig(path=str(tmp_path / "t.npz"), target="y", stream=True), task="binary", seed=0)
    assert info.value.key == "stream"
    with pytest.raises(SpecError, match="'q'") as info:
        table(2).assign(y=["b", "q"]).to_csv(tmp_path / "v.csv", index=False)
        streamed(train=csv, val=str(tmp_path / "v.csv"), target="y")
    assert info.value.key == "target" and "v.csv" in str(info.value) and "val rows" in str(info.value)


def test_csv_with_line_breaks_in_quoted_fields_is_refused(tmp_path):
    text = "a,note,y\n" + "".join(f'{i},"line one\nline two",b\n' for i in range(30))
    (tmp_path / "q.csv").write_text(text)
    with pytest.raises(SpecError, match="quoted field holds a line break") as info:
        streamed(path=str(tmp_path / "q.csv"), target="y", features=["a"], chunk_rows=10)
    assert info.value.key == "path"
    assert len(load_dataset(DataConfig(path=str(tmp_path / "q.csv"), target="y", features=["a"], stream=False),
                            task="binary", seed=0).splits["train"][0]) == 30


@pytest.mark.parametrize("fmt", ["csv", "parquet", "h5", "root"])
def test_streamed_rows_carry_their_event_weights(tmp_path, fmt):
    """data.weight in a streamed table: each served row's weight is the file's (policy applied, times its
    class factor in the train split), the first pass sums them per class, and bad columns are refused."""
    df = table(600).assign(w=lambda d: np.random.default_rng(4).normal(1.0, 1.0, len(d)).round(5))
    if fmt == "csv":
        df.to_csv(tmp_path / "t.csv", index=False)
        source = {"path": str(tmp_path / "t.csv")}
    else:  # parquet in row groups of 128 rows, HDF5 fields, ROOT branches
        source = write(df, tmp_path, fmt)
    path = source["path"]
    if fmt in ("h5", "root"):  # numeric labels there
        df = df.assign(y=df["y"].map({"b": 0, "s": 1, "t": 2}))
    ds = streamed(**source, target="y", weight="w", negative_weights="abs", split={"val": 0.25})
    w_abs = df["w"].abs().to_numpy()
    r = ds.feature_names.index("rowid")  # (an HDF5 group lists its fields by name)
    train = ds.splits["train"].batches(64)
    ids, ws, ys = [], [], []
    for xb, yb, wb in train:
        ids.append(xb[:, r].numpy().astype(int))
        ws.append(wb.numpy())
        ys.append(yb.numpy())
    ids, ws, ys = np.concatenate(ids), np.concatenate(ws), np.concatenate(ys)
    assert ws.dtype == np.float64 and ds.splits["train"].weighted
    np.testing.assert_array_equal(ws, w_abs[ids])
    labels = df["y"].to_numpy()[ids]
    np.testing.assert_allclose(ds.weight_sums, [w_abs[ids][labels == c].sum() for c in ds.classes], rtol=1e-12)
    negative = int((df["w"] < 0).sum())
    assert f"data.weight: {negative} of 600 events of t.{fmt} have a negative weight, made positive" in ds.notes[1]
    # train.class_weight's factors ride on a view of the train split; the split itself is unchanged.
    weighed = ds.splits["train"].weighed(np.array([1.0, 2.0, 3.0]))
    (xb, yb, wb), = list(weighed.batches(1000))
    np.testing.assert_allclose(wb.numpy(), w_abs[xb[:, r].numpy().astype(int)] * np.array([1, 2, 3])[yb.numpy()],
                               rtol=1e-7)
    assert ds.splits["train"].class_factors is None
    x, y, w = ds.splits["val"].head(50)  # the first val rows in file order, with their weights
    assert len(x) == 50 and np.all(np.diff(x[:, r]) > 0) and np.allclose(w, w_abs[x[:, r].astype(int)])
    # In memory, the same rows' weights sum to the same class totals.
    memory = load_dataset(DataConfig(**source, target="y", weight="w", negative_weights="abs", stream=False,
                                     split={"val": 0.25}), task="multiclass", seed=0)
    assert memory.notes == ds.notes[1:]
    if fmt != "csv":
        return
    bad = df.assign(w=lambda d: d["w"].where(d.index != 407))
    bad.to_csv(tmp_path / "nan.csv", index=False)
    with pytest.raises(SpecError, match="weight column 'w' is NaN or infinite in 1 row\\(s\\): 408") as info:
        streamed(path=str(tmp_path / "nan.csv"), target="y", weight="w")
    assert info.value.key == "weight" and "nan.csv" in str(info.value)
    df.drop(columns="w").to_csv(tmp_path / "v.csv", index=False)
    with pytest.raises(SpecError, match="v.csv has no column 'w' for the event weights") as info:
        streamed(train=path, val=str(tmp_path / "v.csv"), target="y", weight="w")
    assert info.value.key == "val"
