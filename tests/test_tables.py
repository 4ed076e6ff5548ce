"""tables.py / columns.py: every table format, `missing:`, and `load_inputs` for predictions."""

from __future__ import annotations

import builtins
import json

import h5py
import numpy as np
import pandas as pd
import pytest

from dlcli.config import DataConfig
from dlcli.data import load_dataset, load_inputs, load_rows
from dlcli.errors import SpecError
from spec_errors import spec_error


def frame(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": [f"ev{i}" for i in range(n)], "a": rng.normal(5, 2, n), "b": rng.uniform(0, 9, n),
                         "y": rng.choice(["b", "s"], n)})


def numbers(n=80, seed=0):
    """A numeric table: row id, three features, an integer class label."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"rowid": np.arange(n), "a": rng.normal(5, 2, n), "b": rng.uniform(0, 9, n),
                         "c": rng.integers(0, 4, n).astype(np.float64), "y": rng.integers(0, 2, n)})


def load(task="binary", seed=0, **data):
    return load_dataset(DataConfig(stream=False, **data), task=task, seed=seed)


def fails(error_key, /, *fragments, task="binary", **data):
    return spec_error(lambda: load(task=task, **data), error_key, *fragments)


# ----------------------------------------------------------------------------------------------
# Formats: each gives the same rows as the csv of the same table


def write_structured(df):
    out = np.zeros(len(df), dtype=[("rowid", "i8"), ("a", "f8"), ("b", "f8"), ("c", "f8"), ("y", "i8")])
    for name in out.dtype.names:
        out[name] = df[name]
    return out


def write_tree(root_file, name, branches):
    """A TTree (uproot's `file[name] = dict` writes the newer RNTuple)."""
    tree = root_file.mktree(name, {k: v.dtype if isinstance(v, np.ndarray) else "var * float64"
                                   for k, v in branches.items()})
    tree.extend(branches)


def write_table(df, path, fmt):
    """The table in one format; returns the data: keys that name the target and the table."""
    file = path / f"t.{fmt.split(':')[0]}"
    if fmt in ("tsv", "tab"):
        df.to_csv(file, sep="\t", index=False)
    elif fmt == "parquet":
        df.to_parquet(file, index=False)
    elif fmt == "npy:structured":
        np.save(path / "t.npy", write_structured(df))
        file = path / "t.npy"
    elif fmt == "npy:plain":
        np.save(path / "t.npy", df.to_numpy(dtype=np.float64))
        return {"path": str(path / "t.npy"), "target": "4"}
    elif fmt.startswith("h5"):
        file = path / "t.h5"
        with h5py.File(file, "w") as f:
            if fmt == "h5:group":
                group = f.create_group("events")
                for name in df.columns:
                    group[name] = df[name].to_numpy()
                f["other"] = np.zeros(3)
            elif fmt == "h5:compound":
                f["events"] = write_structured(df)
            else:
                f["events"] = df.to_numpy(dtype=np.float64)
                return {"path": str(file), "target": "4", "key": "events"}
        return {"path": str(file), "target": "y", "key": "events"}
    elif fmt == "root":
        import uproot

        with uproot.recreate(file) as f:
            write_tree(f, "events", {name: df[name].to_numpy() for name in df.columns})
        return {"path": str(file), "target": "y", "tree": "events"}
    return {"path": str(file), "target": "y"}


@pytest.mark.parametrize("fmt", ["tsv", "tab", "parquet", "npy:structured", "h5:group", "h5:compound", "root"])
def test_every_format_reads_the_same_rows_as_csv(tmp_path, fmt):
    df = numbers()
    df.to_csv(tmp_path / "t.csv", index=False)
    common = dict(split={"val": 0.25}, scale="standard", drop=["rowid"])
    reference = load(path=str(tmp_path / "t.csv"), target="y", **common)
    ds = load(**write_table(df, tmp_path, fmt), **common)
    assert ds.feature_names == ["a", "b", "c"] and ds.classes == [0, 1]
    for split in ("train", "val"):
        np.testing.assert_allclose(ds.splits[split][0], reference.splits[split][0], rtol=1e-6)
        np.testing.assert_array_equal(ds.splits[split][1], reference.splits[split][1])


@pytest.mark.parametrize("fmt", ["npy:plain", "h5:plain"])
def test_plain_2d_arrays_name_columns_by_position(tmp_path, fmt):
    df = numbers()
    ds = load(**write_table(df, tmp_path, fmt), features=["1", "3"])
    assert ds.feature_names == ["1", "3"] and ds.classes == [0, 1]
    np.testing.assert_allclose(ds.splits["train"][0], df[["a", "c"]].to_numpy(np.float32))
    data = write_table(df, tmp_path, fmt)
    message = fails("target", "no column 'y'", 'named by position, "0" to "4"', **{**data, "target": "y"})
    assert "5 columns" in message


def test_parquet_reads_only_the_columns_used_group_by_group(tmp_path, monkeypatch):
    """Numeric parquet columns go row group by row group into one float32 array: the same rows as pandas reads,
    nulls as NaN; a text column falls back to the whole read, whose check names the row."""
    import pyarrow.parquet as pq

    df = numbers().assign(notes=["x" * 50] * 80, flag=[True, False] * 40, n=pd.array(range(80), dtype="Int64"))
    df.loc[3, "a"] = None
    df.loc[5, "n"] = None
    df.to_parquet(tmp_path / "t.parquet", index=False, row_group_size=30)
    asked = []
    read = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", lambda self, i, columns=None, **kw: asked.append(columns)
                        or read(self, i, columns=columns, **kw))
    ds = load(path=str(tmp_path / "t.parquet"), target="y", features=["b", "a", "flag", "n"], missing="mean")
    assert asked == [["b", "a", "flag", "n", "y"]] * 3  # 80 rows in row groups of 30
    expected = df[["b", "a", "flag", "n"]].astype("float32").to_numpy(np.float32, na_value=np.nan)
    expected[3, 1], expected[5, 3] = np.nanmean(expected[:, 1]), np.nanmean(expected[:, 3])
    np.testing.assert_allclose(ds.splits["train"][0], expected, rtol=1e-6)
    assert ds.splits["train"][1].tolist() == df["y"].tolist()
    df.assign(b=df["b"].astype(str).where(df.index != 7, "oops")).to_parquet(tmp_path / "t.parquet", index=False)
    fails("features[0]", "column 'b'", "row 8 holds 'oops'", path=str(tmp_path / "t.parquet"), target="y",
          features=["b", "a"])


def test_hdf5_key_missing_or_wrong_lists_the_file(tmp_path):
    data = write_table(numbers(), tmp_path, "h5:group")
    del data["key"]
    message = fails("key", "name the table with data.key", "group 'events' (5 data sets)", "data set 'other'",
                    **data)
    assert "(3,) float64" in message
    fails("key", "no group or data set 'event'", "did you mean 'events'", **data, key="event")
    with h5py.File(tmp_path / "flat.h5", "w") as f:  # the target at the top level: no key needed
        f["x"], f["y"] = np.arange(10.0), np.arange(10) % 2
    assert load(path=str(tmp_path / "flat.h5"), target="y").feature_names == ["x"]


def test_hdf5_group_with_string_labels_and_a_2d_data_set(tmp_path):
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f["g/x"] = np.arange(20.0).reshape(10, 2)
        f.create_dataset("g/label", data=np.array(["sig", "bkg"] * 5, dtype=object), dtype=h5py.string_dtype())
    ds = load(path=str(tmp_path / "t.h5"), key="g", target="label")
    assert ds.classes == ["bkg", "sig"] and ds.feature_names == ["x[0]", "x[1]"]
    assert ds.splits["train"][1].tolist() == [1, 0] * 5


def test_root_trees_and_branches(tmp_path):
    import awkward as ak
    import uproot

    df = numbers()
    with uproot.recreate(tmp_path / "t.root") as f:
        write_tree(f, "events", {"a": df["a"].to_numpy(), "b": df["b"].to_numpy(), "y": df["y"].to_numpy(),
                                 "jets": ak.Array([[1.0, 2.0]] * 40 + [[3.0]] * 40)})
        f["runs"] = {"run": np.arange(3), "lumi": np.arange(3) * 2.0}  # an RNTuple
    root = str(tmp_path / "t.root")
    fails("tree", "holds 2 trees (events, runs)", "data.tree", path=root, target="y")
    fails("tree", "no tree 'event'", "did you mean 'events'", path=root, target="y", tree="event")
    ds = load(path=root, target="y", tree="events")
    # The jagged branch is no default feature; its counter (entries per event) is a number per event.
    assert ds.feature_names == ["a", "b", "njets"]
    np.testing.assert_allclose(ds.splits["train"][0], np.c_[df["a"], df["b"], [2] * 40 + [1] * 40], rtol=1e-6)
    assert load(path=root, target="y", tree="events", branches=["b"]).feature_names == ["b"]
    fails("branches[1]", "jets", "not one number per entry", path=root, target="y", tree="events",
          branches=["a", "jets"])
    fails("branches[0]", "no branch 'c'", "(branches: a, b, y, njets, jets)", path=root, target="y",
          tree="events", branches=["c"])
    runs = load("regression", path=root, target="run", tree="runs")
    assert runs.feature_names == ["lumi"] and runs.splits["train"][0].ravel().tolist() == [0, 2, 4]


def test_format_keys_only_with_their_format(tmp_path):
    numbers().to_csv(tmp_path / "t.csv", index=False)
    csv = str(tmp_path / "t.csv")
    fails("tree", "ROOT", path=csv, target="y", tree="events")
    fails("branches", "give features:", path=csv, target="y", branches=["a"])
    fails("key", "HDF5", path=csv, target="y", key="events")


def test_root_without_uproot_says_how_to_install_it(tmp_path, monkeypatch):
    data = write_table(numbers(), tmp_path, "root")
    real_import = builtins.__import__

    def no_uproot(name, *args, **kwargs):
        if name == "uproot" or name.startswith("uproot."):
            raise ImportError("No module named 'uproot'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uproot)
    fails("path", "needs uproot", 'pip install "dlcli[hep]"', "uv sync --extra hep", **data)


def test_npy_that_is_not_a_table(tmp_path):
    np.save(tmp_path / "v.npy", np.arange(5.0))
    fails("path", "has shape (5,)", "2-D array", path=str(tmp_path / "v.npy"), target="0")
    np.save(tmp_path / "i.npy", np.zeros((4, 3, 3)))
    fails("path", "np.savez", path=str(tmp_path / "i.npy"), target="0")


# ----------------------------------------------------------------------------------------------
# missing: error | drop | mean


def with_gaps(n=80):
    df = numbers(n)
    df.loc[[3, 10, 11], "a"] = np.nan
    df.loc[[10, 50], "c"] = np.nan
    return df


def test_missing_error_suggests_the_missing_key(tmp_path):
    with_gaps().to_csv(tmp_path / "t.csv", index=False)
    fails("features", "5 missing (NaN)", "a, c", "row(s) 4, 11, 12, 51", "missing: drop or mean",
          path=str(tmp_path / "t.csv"), target="y")


def test_missing_drop_removes_the_rows_and_says_so(tmp_path):
    df = with_gaps()
    df.to_csv(tmp_path / "t.csv", index=False)
    ds = load(path=str(tmp_path / "t.csv"), target="y", missing="drop")
    kept = df.dropna()
    np.testing.assert_allclose(ds.splits["train"][0], kept[["rowid", "a", "b", "c"]].to_numpy(np.float32))
    assert ds.notes == ["missing: dropped 4 of 80 rows of t.csv (NaN in a, c)"]
    inf = df.assign(b=df["b"].where(df.index != 7, np.inf))
    inf.to_csv(tmp_path / "inf.csv", index=False)
    fails("features", "1 infinite value(s) in b at row(s) 8", path=str(tmp_path / "inf.csv"), target="y",
          missing="drop")


def test_missing_mean_fills_with_train_split_means_in_every_split(tmp_path):
    df = with_gaps()
    df.to_csv(tmp_path / "t.csv", index=False)
    ds = load(path=str(tmp_path / "t.csv"), target="y", missing="mean", split={"val": 0.3})
    train_ids = ds.splits["train"][0][:, 0].astype(int)
    train = df.loc[train_ids]
    for name in ("a", "b", "c"):
        assert ds.fill[name] == pytest.approx(train[name].mean())  # pandas skips NaN
    for split in ("train", "val"):
        x = ds.splits[split][0]
        rows = df.loc[x[:, 0].astype(int)]
        for j, name in enumerate(["a", "b", "c"], start=1):
            gaps = rows[name].isna().to_numpy()
            np.testing.assert_allclose(x[gaps, j], ds.fill[name], rtol=1e-6)
            np.testing.assert_allclose(x[~gaps, j], rows[name][~gaps], rtol=1e-6)
    assert ds.notes == ["missing: filled 5 NaN value(s) in 2 column(s) (a, c) with their train-split means"]
    df.loc[5, "y"] = np.nan
    df.to_csv(tmp_path / "t.csv", index=False)
    fails("target", "missing in 1 row(s): 6", path=str(tmp_path / "t.csv"), target="y", missing="mean")


def test_stored_fill_is_reused_for_evaluation_and_prediction_files(tmp_path):
    numbers(60).to_csv(tmp_path / "train.csv", index=False)
    cfg = DataConfig(path=str(tmp_path / "train.csv"), target="y", missing="mean", scale="standard",
                     drop=["rowid"], stream=False)
    ds = load_dataset(cfg, task="binary", seed=0)
    assert ds.notes == []  # nothing to fill in the training file: the means are still kept
    new = numbers(6, seed=3)
    new.loc[[1, 4], "b"] = np.nan
    new.to_csv(tmp_path / "new.csv", index=False)
    filled = (ds.fill["b"] - ds.scaler.offset[1]) / ds.scaler.scale[1]
    x, y = load_rows(tmp_path / "new.csv", cfg, task="binary", scaler=ds.scaler, classes=ds.classes,
                     feature_names=ds.feature_names, fill=ds.fill)
    np.testing.assert_allclose(x[[1, 4], 1], filled, rtol=1e-5)
    inputs = load_inputs(tmp_path / "new.csv", cfg, feature_names=ds.feature_names, scaler=ds.scaler, fill=ds.fill)
    np.testing.assert_allclose(inputs.x, x, rtol=1e-6)
    assert inputs.notes == ["missing: filled 2 NaN value(s) in 1 column(s) (b) with their train-split means"]
    with pytest.raises(SpecError, match="stored no fill values"):
        load_inputs(tmp_path / "new.csv", cfg, feature_names=ds.feature_names, scaler=ds.scaler, fill=None)
    dropping = cfg.model_copy(update={"missing": "drop"})
    inputs = load_inputs(tmp_path / "new.csv", dropping, feature_names=ds.feature_names, scaler=None)
    assert inputs.rows.tolist() == [0, 2, 3, 5] and inputs.passthrough["rowid"].tolist() == [0, 2, 3, 5]
    assert inputs.y_raw.tolist() == new["y"].iloc[[0, 2, 3, 5]].tolist()


def test_train_writes_the_fill_and_evaluate_uses_it(tmp_path):
    from dlcli import evaluate, train

    with_gaps(120).drop(columns="rowid").to_csv(tmp_path / "t.csv", index=False)
    config = {"name": "gaps", "seed": 0, "data": {"path": str(tmp_path / "t.csv"), "target": "y",
                                                  "missing": "mean", "scale": "standard",
                                                  "split": {"test": 0.25}},
              "model": {"layers": [{"type": "dense", "units": 1, "activation": "sigmoid"}]},
              "loss": "binary_crossentropy", "train": {"epochs": 1, "batch_size": 32, "device": "cpu"}}
    from dlcli.config import load_config

    run = train(load_config(config), runs_root=tmp_path / "runs", progress=False).run_dir
    labels = json.loads((run / "labels.json").read_text())
    assert set(labels["fill"]) == {"a", "b", "c"}
    result = evaluate(run, data=tmp_path / "t.csv", write=False, plots=False)
    assert result["n_samples"] == 120


# ----------------------------------------------------------------------------------------------
# load_inputs: the rows `dlcli predict` runs the model on


def test_load_inputs_csv_scales_like_training_and_passes_other_columns_through(tmp_path):
    df = frame()
    df.to_csv(tmp_path / "train.csv", index=False)
    cfg = DataConfig(path=str(tmp_path / "train.csv"), target="y", drop=["id"], scale="standard", stream=False)
    ds = load_dataset(cfg, task="binary", seed=0)
    new = frame(10, seed=5)[["b", "id", "a"]]  # another column order, no target
    new.to_csv(tmp_path / "new.csv", index=False)
    inputs = load_inputs(tmp_path / "new.csv", cfg, feature_names=ds.feature_names, scaler=ds.scaler)
    mean, std = df[["a", "b"]].mean().to_numpy(), df[["a", "b"]].std(ddof=0).to_numpy()
    np.testing.assert_allclose(inputs.x, (new[["a", "b"]].to_numpy() - mean) / std, rtol=1e-5, atol=1e-5)
    assert inputs.x.dtype == np.float32 and inputs.y_raw is None and inputs.rows.tolist() == list(range(10))
    assert list(inputs.passthrough.columns) == ["id"] and inputs.passthrough["id"].tolist() == new["id"].tolist()
    with_target = frame(5, seed=6)
    with_target.to_csv(tmp_path / "t.csv", index=False)
    inputs = load_inputs(tmp_path / "t.csv", cfg, feature_names=ds.feature_names, scaler=ds.scaler)
    assert inputs.y_raw.tolist() == with_target["y"].tolist()
    assert list(inputs.passthrough.columns) == ["id", "y"]
    new[["id", "a"]].to_csv(tmp_path / "lacking.csv", index=False)
    with pytest.raises(SpecError, match="no column 'b', a feature of the training data"):
        load_inputs(tmp_path / "lacking.csv", cfg, feature_names=ds.feature_names, scaler=ds.scaler)


@pytest.mark.parametrize("fmt", ["tsv", "parquet", "npy:structured", "npy:plain", "h5:group", "h5:compound",
                                 "root"])
def test_load_inputs_every_format(tmp_path, fmt):
    df = numbers(30)
    data = write_table(df, tmp_path, fmt)
    cfg = DataConfig(**data, stream=False)
    ds = load_dataset(cfg, task="binary", seed=0)
    inputs = load_inputs(data["path"], cfg, feature_names=ds.feature_names, scaler=None)
    np.testing.assert_allclose(inputs.x, ds.splits["train"][0])
    np.testing.assert_array_equal(inputs.y_raw.astype(int), df["y"])
    assert list(inputs.passthrough.columns) == [data["target"]]


def test_load_inputs_npz_without_other_arrays_has_no_passthrough(tmp_path):
    np.savez(tmp_path / "t.npz", x=np.arange(12.0).reshape(6, 2), y=np.arange(6) % 2)
    cfg = DataConfig(path=str(tmp_path / "t.npz"), target="y", stream=False)
    ds = load_dataset(cfg, task="binary", seed=0)
    np.savez(tmp_path / "new.npz", x=np.ones((3, 2)))
    inputs = load_inputs(tmp_path / "new.npz", cfg, feature_names=ds.feature_names, scaler=None)
    assert inputs.passthrough is None and inputs.y_raw is None and inputs.x.shape == (3, 2)


def test_format_keys_are_checked_with_the_config():
    from dlcli.config import load_config
    from dlcli.errors import ConfigError

    def problems(data):
        with pytest.raises(ConfigError) as info:
            load_config({"data": data, "model": {"layers": [{"type": "dense", "units": 1}]}, "loss": "mse"})
        return str(info.value)

    assert "not two of them" in problems({"path": "x.root", "target": "y", "branches": ["a"], "features": ["b"]})
    assert "tree describes what to read from a data file" in problems({"dataset": "iris", "tree": "events"})
