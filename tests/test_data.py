"""data.py: sources, splits, label mapping, scaling and every user-fixable data error."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dlcli.config import DataConfig
from dlcli.data import Scaler, load_dataset, load_rows
from dlcli.errors import SpecError
from spec_errors import spec_error


def write_csv(path, **columns):
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def table(n=200, seed=0, labels=("b", "s"), weights=(0.7, 0.3)):
    """A small classification table: three numeric features, string labels in a given proportion."""
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(5, 2, n).round(3),
        "b": rng.uniform(0, 10, n).round(3),
        "c": rng.integers(0, 4, n),
        "y": rng.choice(labels, n, p=weights),
    }


def load(task="binary", seed=0, **data):
    return load_dataset(DataConfig(**data), task=task, seed=seed)


def fails(key, *fragments, task="binary", **data):
    return spec_error(lambda: load(task=task, **data), key, *fragments)


# ----------------------------------------------------------------------------------------------
# Built-in datasets


@pytest.mark.parametrize(
    "name, task, features, n_classes, rows",
    [("breast_cancer", "binary", 30, 2, 569), ("iris", "multiclass", 4, 3, 150),
     ("wine", "multiclass", 13, 3, 178), ("diabetes", "regression", 10, None, 442)],
)
def test_builtin_tables(name, task, features, n_classes, rows):
    ds = load(task, dataset=name)
    x, y = ds.splits["train"]
    assert list(ds.splits) == ["train"]
    assert x.shape == (rows, features) and x.dtype == np.float32 and x.flags.c_contiguous
    assert ds.input_shape == (features,) and len(ds.feature_names) == features
    assert ds.task == task and ds.source == f"{name} (scikit-learn)" and ds.scaler is None
    if n_classes:
        assert y.dtype == np.int64 and ds.classes == list(range(n_classes))
        assert sum(ds.class_counts()) == rows
    else:
        assert y.shape == (rows, 1) and y.dtype == np.float32
        assert ds.classes is None and ds.class_counts() is None


def test_digits_are_images_with_raw_pixel_values():
    ds = load("multiclass", dataset="digits", split={"test": 0.1})
    x, y = ds.splits["train"]
    assert x.shape[1:] == (1, 8, 8) == ds.input_shape and x.dtype == np.float32
    assert x.min() == 0 and x.max() == 16
    assert ds.feature_names is None and len(ds.classes) == 10
    assert len(ds.splits["test"][0]) == 180


def test_builtin_features_and_drop_by_sklearn_names():
    ds = load("multiclass", dataset="iris", features=["petal width (cm)", "sepal length (cm)"])
    assert ds.feature_names == ["petal width (cm)", "sepal length (cm)"] and ds.input_shape == (2,)
    ds = load("multiclass", dataset="iris", drop=["petal width (cm)"])
    assert ds.input_shape == (3,) and "petal width (cm)" not in ds.feature_names
    fails("features[0]", "petal width (cm)", task="multiclass", dataset="iris", features=["petal widht (cm)"])
    fails("target", "leave data.target out", task="multiclass", dataset="iris", target="species")
    fails("features", "images", task="multiclass", dataset="digits", features=["x"])


def test_regression_on_a_classification_builtin_gives_float_targets():
    ds = load("regression", dataset="iris")
    assert ds.splits["train"][1].shape == (150, 1) and ds.classes is None


# ----------------------------------------------------------------------------------------------
# csv and npz files


def test_csv_default_features_listed_features_and_drop(tmp_path):
    csv = write_csv(tmp_path / "t.csv", **table())
    ds = load(path=str(csv), target="y")
    assert ds.feature_names == ["a", "b", "c"] and ds.source == str(csv)
    np.testing.assert_allclose(ds.splits["train"][0][:, 0], pd.read_csv(csv)["a"], rtol=1e-6)
    ds = load(path=str(csv), target="y", features=["c", "a"])
    assert ds.feature_names == ["c", "a"]
    np.testing.assert_array_equal(ds.splits["train"][0][:, 0], pd.read_csv(csv)["c"])
    assert load(path=str(csv), target="y", drop=["b"]).feature_names == ["a", "c"]


def test_string_labels_map_to_sorted_class_ids(tmp_path):
    csv = write_csv(tmp_path / "t.csv", a=[1, 2, 3, 4], y=["s", "b", "s", "s"])
    ds = load(path=str(csv), target="y")
    assert ds.classes == ["b", "s"]
    assert ds.splits["train"][1].tolist() == [1, 0, 1, 1] and ds.class_counts() == [1, 3]


def test_bool_and_integral_float_labels_are_plain_python_values(tmp_path):
    ds = load(path=str(write_csv(tmp_path / "b.csv", a=[1, 2, 3], y=[True, False, True])), target="y")
    assert ds.classes == [False, True] and type(ds.classes[0]) is bool
    floats = write_csv(tmp_path / "f.csv", a=[1, 2, 3], y=[2.0, 0.0, 5.0])
    ds = load("multiclass", path=str(floats), target="y")
    assert ds.classes == [0, 2, 5] and all(type(c) is int for c in ds.classes)
    json.dumps(ds.classes)


def test_npz_table_from_several_arrays(tmp_path):
    rng = np.random.default_rng(0)
    file = tmp_path / "t.npz"
    np.savez(file, age=rng.normal(size=50), xy=rng.normal(size=(50, 2)), label=rng.integers(0, 3, 50))
    ds = load("multiclass", path=str(file), target="label")
    assert ds.feature_names == ["age", "xy[0]", "xy[1]"] and ds.input_shape == (3,)
    ds = load("multiclass", path=str(file), target="label", features=["xy"])
    assert ds.feature_names == ["xy[0]", "xy[1]"]


@pytest.mark.parametrize("shape, expected",
                         [((40, 6, 5), (1, 6, 5)), ((40, 3, 6, 5), (3, 6, 5)), ((40, 7), (7,))])
def test_npz_single_array_used_as_is(tmp_path, shape, expected):
    file = tmp_path / "i.npz"
    np.savez(file, x=np.random.default_rng(0).random(shape), y=np.arange(40) % 2)
    ds = load(path=str(file), target="y")
    assert ds.input_shape == expected and ds.splits["train"][0].flags.c_contiguous
    assert (ds.feature_names is None) == (len(expected) == 3)


def test_npz_one_hot_target_becomes_class_ids(tmp_path):
    ids = np.array([0, 2, 1, 2, 0, 1])
    file = tmp_path / "o.npz"
    np.savez(file, x=np.arange(12.0).reshape(6, 2), y=np.eye(3)[ids])
    ds = load("multiclass", path=str(file), target="y")
    assert ds.splits["train"][1].tolist() == ids.tolist() and ds.classes == [0, 1, 2]
    bad = np.eye(3)[ids]
    bad[3, 0] = 1
    np.savez(file, x=np.arange(12.0).reshape(6, 2), y=bad)
    fails("target", "not one-hot", "row: 4", task="multiclass", path=str(file), target="y")


def test_npz_regression_target_keeps_its_columns(tmp_path):
    file = tmp_path / "r.npz"
    np.savez(file, x=np.ones((10, 3)), y=np.arange(20.0).reshape(10, 2))
    y = load("regression", path=str(file), target="y").splits["train"][1]
    assert y.shape == (10, 2) and y.dtype == np.float32


# ----------------------------------------------------------------------------------------------
# Splits


def test_split_sizes_are_fractions_of_all_rows(tmp_path):
    csv = write_csv(tmp_path / "t.csv", **table(200))
    ds = load(path=str(csv), target="y", split={"val": 0.2, "test": 0.1})
    assert list(ds.splits) == ["train", "val", "test"]
    assert [len(ds.splits[s][0]) for s in ds.splits] == [140, 40, 20]
    assert list(load(path=str(csv), target="y", split={"val": 0.25}).splits) == ["train", "val"]


def test_stratified_split_keeps_class_proportions(tmp_path):
    csv = write_csv(tmp_path / "t.csv", **table(300, weights=(0.8, 0.2)))
    ds = load(path=str(csv), target="y", split={"val": 0.2, "test": 0.2})
    share = np.bincount(np.concatenate([y for _, y in ds.splits.values()]))[1] / 300
    for _, y in ds.splits.values():
        assert abs(y.sum() - share * len(y)) <= 1


def test_splits_are_reproducible_with_the_seed_and_differ_with_another(tmp_path):
    csv = write_csv(tmp_path / "t.csv", **table())
    config = dict(path=str(csv), target="y", split={"val": 0.2, "test": 0.2}, scale="standard")
    first, again, other = (load(seed=s, **config) for s in (3, 3, 4))
    for name in first.splits:
        np.testing.assert_array_equal(first.splits[name][0], again.splits[name][0])
        np.testing.assert_array_equal(first.splits[name][1], again.splits[name][1])
    assert not np.array_equal(first.splits["test"][0], other.splits["test"][0])


def test_tiny_class_falls_back_to_an_unstratified_split(tmp_path):
    data = table(60, labels=("a", "b"), weights=(0.5, 0.5))
    data["y"][0] = "c"  # one row of class c: too few to stratify
    csv = write_csv(tmp_path / "t.csv", **data)
    ds = load("multiclass", path=str(csv), target="y", split={"val": 0.5})
    assert len(ds.splits["val"][0]) == 30


def test_train_val_test_files(tmp_path):
    files = {s: str(write_csv(tmp_path / f"{s}.csv", **table(n, seed=i))) for i, (s, n) in
             enumerate([("train", 100), ("val", 30), ("test", 20)])}
    ds = load(**files, target="y")
    assert [len(ds.splits[s][0]) for s in ("train", "val", "test")] == [100, 30, 20]
    np.testing.assert_allclose(ds.splits["val"][0][:, 1], pd.read_csv(files["val"])["b"], rtol=1e-6)
    assert ds.source == " + ".join(files.values())


def test_val_carved_from_the_train_file(tmp_path):
    train = write_csv(tmp_path / "train.csv", **table(100))
    test = write_csv(tmp_path / "test.csv", **table(20, seed=1))
    ds = load(train=str(train), test=str(test), target="y", split={"val": 0.2})
    assert [len(ds.splits[s][0]) for s in ("train", "val", "test")] == [80, 20, 20]
    fails("split.test", "data.test or split.test", train=str(train), test=str(test), target="y",
          split={"test": 0.2})


def test_val_file_needs_the_train_features_and_known_labels(tmp_path):
    train = write_csv(tmp_path / "train.csv", **table(50))
    lacking = write_csv(tmp_path / "val.csv", a=[1.0], y=["s"])
    fails("val", "no column 'b'", str(lacking), train=str(train), val=str(lacking), target="y")
    unseen = write_csv(tmp_path / "val2.csv", a=[1.0, 2], b=[1.0, 2], c=[1, 2], y=["s", "x"])
    fails("target", "'x'", "val rows", train=str(train), val=str(unseen), target="y")


# ----------------------------------------------------------------------------------------------
# Scaling


def test_standard_scaler_fitted_on_train_rows_only(tmp_path):
    csv = write_csv(tmp_path / "t.csv", **table(), k=np.full(200, 3.0))
    ds = load(path=str(csv), target="y", split={"val": 0.2, "test": 0.2}, scale="standard")
    raw = load(path=str(csv), target="y", split={"val": 0.2, "test": 0.2})
    x_train = ds.splits["train"][0]
    np.testing.assert_allclose(x_train[:, :3].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(x_train[:, :3].std(axis=0), 1, atol=1e-4)
    assert (x_train[:, 3] == 0).all()  # constant column: std 0 -> scale 1
    raw_train = raw.splits["train"][0].astype(np.float64)
    mean, std = raw_train.mean(axis=0), raw_train.std(axis=0)
    std[std == 0] = 1
    for split in ("val", "test"):
        by_hand = (raw.splits[split][0] - mean) / std
        np.testing.assert_allclose(ds.splits[split][0], by_hand, rtol=1e-5, atol=1e-5)
        assert ds.splits[split][0].dtype == np.float32


def test_minmax_scaler(tmp_path):
    csv = write_csv(tmp_path / "t.csv", **table())
    ds = load(path=str(csv), target="y", split={"test": 0.3}, scale="minmax")
    x = ds.splits["train"][0]
    np.testing.assert_allclose(x.min(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(x.max(axis=0), 1, atol=1e-6)
    assert ds.scaler.kind == "minmax"


def test_image_scaler_is_per_pixel():
    ds = load("multiclass", dataset="digits", scale="standard")
    assert ds.scaler.offset.shape == (64,) and ds.splits["train"][0].shape[1:] == (1, 8, 8)


def test_standard_scaler_over_many_blocks_matches_numpy_in_float64():
    # 30,000 x 40 values are several of BLOCK_VALUES, the last one partial; a large offset checks the
    # two-pass deviations (a sum of squares in float32 would lose the spread).
    x = np.random.default_rng(1).normal(1000, 0.5, (30_000, 40)).astype(np.float32)
    scaler = Scaler.fit("standard", x)
    wide = x.astype(np.float64)
    np.testing.assert_allclose(scaler.offset, wide.mean(axis=0), rtol=1e-7)
    np.testing.assert_allclose(scaler.scale, wide.std(axis=0), rtol=1e-6)


def test_an_infinite_value_past_the_first_block_is_found(tmp_path):
    a = np.arange(20_000, dtype=float)
    a[18_500] = np.inf  # the check walks row blocks: the value is in the third
    csv = str(write_csv(tmp_path / "t.csv", **{f"c{i}": a if i == 27 else np.ones(20_000) for i in range(28)},
                        y=np.arange(20_000) % 2))
    fails("features", "1 missing (NaN) or infinite", "c27", "row(s) 18501", path=csv, target="y")


def test_scaler_dict_round_trip():
    x = np.random.default_rng(0).normal(3, 2, (50, 4)).astype(np.float32)
    scaler = Scaler.fit("standard", x)
    again = Scaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    assert again.kind == "standard"
    np.testing.assert_array_equal(again.transform(x), scaler.transform(x))
    with pytest.raises(ValueError):
        Scaler.from_dict({"kind": "standard"})


def test_passed_in_scaler_and_classes_are_applied_not_refitted(tmp_path):
    csv = write_csv(tmp_path / "t.csv", a=[1.0, 2, 3, 4], b=[0.0, 0, 1, 1], y=["s", "s", "b", "s"])
    scaler = Scaler("standard", [1.0, 0.0], [2.0, 1.0])
    ds = load_dataset(DataConfig(path=str(csv), target="y", scale="standard"), task="multiclass", seed=0,
                      scaler=scaler, classes=["x", "s", "b"])
    assert ds.scaler is scaler and ds.classes == ["x", "s", "b"]
    np.testing.assert_allclose(ds.splits["train"][0][:, 0], [0, 0.5, 1, 1.5])
    assert ds.splits["train"][1].tolist() == [1, 1, 2, 1]
    with pytest.raises(SpecError, match="'b'") as info:
        load_dataset(DataConfig(path=str(csv), target="y"), task="binary", seed=0, classes=["s", "z"])
    assert info.value.key == "target"


# ----------------------------------------------------------------------------------------------
# Errors a user can fix


def test_missing_files_name_the_key_and_path(tmp_path):
    fails("path", "not found", str(tmp_path / "nope.csv"), path=str(tmp_path / "nope.csv"), target="y")
    train = write_csv(tmp_path / "train.csv", **table(20))
    fails("train", "not found", train=str(tmp_path / "no.csv"), target="y")
    fails("test", "not found", "gone.csv", train=str(train), test=str(tmp_path / "gone.csv"), target="y")


def test_unknown_columns(tmp_path):
    csv = str(write_csv(tmp_path / "t.csv", **table(20), label=np.arange(20) % 2))
    fails("target", "no column 'lable'", "did you mean 'label'", "(columns: a, b, c, y, label)", path=csv,
          target="lable")
    fails("features[1]", "no column 'bb'", "did you mean 'b'", path=csv, target="y", features=["a", "bb"])
    fails("drop[0]", "no column 'cc' to drop", path=csv, target="y", drop=["cc"])
    fails("features[1]", "is the target", path=csv, target="y", features=["a", "y"])


def test_non_numeric_feature_names_column_row_and_value(tmp_path):
    csv = str(write_csv(tmp_path / "t.csv", a=[1, 2, 3], b=["1.5", "x7", "2"], y=[0, 1, 0]))
    fails("features", "column 'b'", "not numeric", "row 2", "'x7'", path=csv, target="y")
    fails("features[0]", "column 'b'", path=csv, target="y", features=["b"])


def test_nan_and_infinite_values(tmp_path):
    csv = str(write_csv(tmp_path / "t.csv", a=[1, np.nan, 3, 4], b=[1, 2, np.inf, np.nan], y=[0, 1, 0, 1]))
    fails("features", "3 missing (NaN) or infinite", "a, b", "row(s) 2, 3, 4", path=csv, target="y")
    csv = str(write_csv(tmp_path / "u.csv", a=[1, 2, 3], y=["s", None, "b"]))
    fails("target", "missing in 1 row(s): 2", path=csv, target="y")


def test_empty_files_and_unsupported_types(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    fails("path", "is empty", path=str(tmp_path / "empty.csv"), target="y")
    (tmp_path / "header.csv").write_text("a,y\n")
    fails("path", "no data rows", path=str(tmp_path / "header.csv"), target="y")
    (tmp_path / "t.xlsx").write_text("x")
    fails("path", "tables are read from .csv", ".parquet", ".root", "'.xlsx'", path=str(tmp_path / "t.xlsx"), target="y")


def test_target_kind_must_fit_the_task(tmp_path):
    csv = str(write_csv(tmp_path / "t.csv", a=[1, 2, 3], y=["s", "b", "s"]))
    fails("target", "not numeric", "'s'", "regression", task="regression", path=csv, target="y")
    csv = str(write_csv(tmp_path / "f.csv", a=[1, 2, 3], y=[0.5, 1.0, 2.25]))
    fails("target", "fractional", "0.5", "task: regression", path=csv, target="y")


def test_binary_task_with_three_classes_is_left_to_the_loss():
    assert len(load("binary", dataset="iris").classes) == 3


def test_too_few_rows_for_the_split(tmp_path):
    csv = str(write_csv(tmp_path / "t.csv", a=[1.0], y=[0]))
    fails("split.val", "too few", path=csv, target="y", split={"val": 0.5})


# ----------------------------------------------------------------------------------------------
# load_rows: an extra file for `dlcli evaluate`


def test_load_rows_matches_the_test_split(tmp_path):
    data = table(120)
    csv = write_csv(tmp_path / "t.csv", **data)
    cfg = DataConfig(path=str(csv), target="y", split={"val": 0.2, "test": 0.25}, scale="standard")
    ds = load_dataset(cfg, task="binary", seed=7)
    x_test, y_test = ds.splits["test"]
    # Write the test rows back out (reordered columns, an extra one) and read them with the stored state.
    raw = load_dataset(cfg.model_copy(update={"scale": "none"}), task="binary", seed=7).splits["test"]
    x_raw, labels = raw[0], np.array(ds.classes)[raw[1]]
    extra = write_csv(tmp_path / "extra.csv", id=np.arange(len(x_raw)), c=x_raw[:, 2], y=labels,
                      b=x_raw[:, 1], a=x_raw[:, 0])
    x, y = load_rows(extra, cfg, task="binary", scaler=ds.scaler, classes=ds.classes,
                     feature_names=ds.feature_names)
    np.testing.assert_allclose(x, x_test, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(y, y_test)
    unseen = write_csv(tmp_path / "unseen.csv", a=[1.0], b=[1.0], c=[1], y=["q"])
    with pytest.raises(SpecError, match="'q'"):
        load_rows(unseen, cfg, task="binary", scaler=ds.scaler, classes=ds.classes)
