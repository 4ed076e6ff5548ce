"""`data: {openml: ID}` read from a real fetch_openml cache (scikit-learn's own iris responses), and the
messages when the cache is missing: never a download with download: false, never a traceback."""

import csv
import gzip
import json
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace
from urllib.error import URLError
from urllib.parse import urlparse

import numpy as np
import pytest
import sklearn.datasets

from dlcli.config import DataConfig, load_config
from dlcli.data import load_dataset
from dlcli.errors import ConfigError, SpecError

# The gzipped OpenML answers scikit-learn's own tests use: iris (61) and penguins (42585).
FIXTURES = Path(sklearn.datasets.__file__).parent / "tests" / "data" / "openml"
# fixture file -> where fetch_openml caches that answer under <data_home>/openml/openml.org/
CACHE_LAYOUT = {
    "api-v1-jd-{id}.json.gz": "api/v1/json/data/{id}.gz",
    "api-v1-jdf-{id}.json.gz": "api/v1/json/data/features/{id}.gz",
    "api-v1-jdq-{id}.json.gz": "api/v1/json/data/qualities/{id}.gz",
    "api-v1-jdl-dn-iris-l-2-s-act-.json.gz": "api/v1/json/data/list/data_name/iris/limit/2/status/active/.gz",
}

pytestmark = pytest.mark.skipif(not (FIXTURES / "id_61").is_dir(), reason="this scikit-learn ships no OpenML test responses")


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def make_cache(root: Path, data_id: int = 61, *, without_data: bool = False) -> Path:
    """A fetch_openml cache under root, as a first download with download: true leaves it."""
    fixtures = FIXTURES / f"id_{data_id}"
    cache = root / "openml" / "openml.org"
    for fixture, cached in CACHE_LAYOUT.items():
        source = fixtures / fixture.format(id=data_id)
        if source.exists():
            (cache / cached.format(id=data_id)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, cache / cached.format(id=data_id))
    if not without_data:  # the data file goes where the description's url points
        with gzip.open(fixtures / f"api-v1-jd-{data_id}.json.gz", "rt") as f:
            url = json.load(f)["data_set_description"]["url"]
        dest = cache / (urlparse(url).path.lstrip("/") + ".gz")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(next(fixtures.glob("data-v1-dl-*.arff.gz")), dest)
    return root


def arff_rows(data_id: int) -> list[list[str]]:
    """The reference: the ARFF data file itself, read line by line."""
    with gzip.open(next((FIXTURES / f"id_{data_id}").glob("data-v1-dl-*.arff.gz")), "rt") as f:
        lines = [line.strip() for line in f]
    start = next(i for i, line in enumerate(lines) if line.upper() == "@DATA") + 1
    return list(csv.reader(line for line in lines[start:] if line and not line.startswith("%")))


def iris_arff() -> tuple[np.ndarray, list[str]]:
    rows = arff_rows(61)
    return np.array([[float(v) for v in r[:4]] for r in rows], dtype=np.float32), [r[4] for r in rows]


def test_reads_the_cached_table_offline(tmp_path, no_network):
    root = make_cache(tmp_path)
    data = DataConfig(openml=61, root=str(root))
    ds = load_dataset(data, task="multiclass", seed=0)
    assert data.target == "class"  # the default target, filled in for the run's resolved config
    x_ref, labels = iris_arff()
    x, y = ds.splits["train"]
    assert ds.source == "OpenML data set 61 (iris)"
    assert ds.feature_names == ["sepallength", "sepalwidth", "petallength", "petalwidth"]
    assert ds.classes == sorted(set(labels)) == ["Iris-setosa", "Iris-versicolor", "Iris-virginica"]
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(np.array(ds.classes)[y], labels)


def test_by_name_another_target_and_table_options(tmp_path, no_network):
    root = make_cache(tmp_path)
    x_ref, _ = iris_arff()
    ds = load_dataset(DataConfig(openml="iris", root=str(root), target="petalwidth", drop=["class"],
                                 split={"test": 0.2}), task="regression", seed=0)
    assert ds.feature_names == ["sepallength", "sepalwidth", "petallength"]
    assert ds.rows() == {"train": 120, "test": 30}
    x, y = np.concatenate([ds.splits["train"][0], ds.splits["test"][0]]), np.concatenate(
        [ds.splits["train"][1], ds.splits["test"][1]])
    order = np.lexsort(np.c_[x, y].T)  # the rows, split and shuffled, are the table's rows
    ref = np.c_[x_ref[:, :3], x_ref[:, 3:]]
    np.testing.assert_array_equal(np.c_[x, y][order], ref[np.lexsort(ref.T)])

    binary = load_dataset(DataConfig(openml=61, root=str(root), positive=["Iris-setosa"],
                                      features=["petallength"]), task="binary", seed=0)
    assert binary.class_counts() == [100, 50] and binary.input_shape == (1,)


def test_a_bad_target_or_feature_names_the_data_set_and_key(tmp_path):
    root = make_cache(tmp_path)
    with pytest.raises(SpecError, match=r"OpenML data set 61 \(iris\) has no column 'clas'; did you mean 'class'") as e:
        load_dataset(DataConfig(openml=61, root=str(root), target="clas"), task="multiclass", seed=0)
    assert e.value.key == "target"
    with pytest.raises(SpecError, match="has no column 'petal'") as e:
        load_dataset(DataConfig(openml=61, root=str(root), features=["sepalwidth", "petal"]), task="multiclass", seed=0)
    assert e.value.key == "features[1]"


def test_missing_values_refused_or_dropped_like_a_table(tmp_path, no_network):
    """Penguins, like HIGGS, has rows with missing numeric features."""
    root = make_cache(tmp_path, 42585)
    numeric = ["culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g"]
    rows = arff_rows(42585)
    gaps = [i + 1 for i, r in enumerate(rows) if "?" in r[2:6]]  # 1-based data rows
    assert len(gaps) == 2
    data = {"openml": 42585, "root": str(root), "features": numeric}
    with pytest.raises(SpecError, match=rf"8 missing .* at row\(s\) {gaps[0]}, {gaps[1]}") as e:
        load_dataset(DataConfig(**data), task="multiclass", seed=0)
    assert e.value.key == "features[0]"
    ds = load_dataset(DataConfig(**data, missing="drop"), task="multiclass", seed=0)
    assert ds.rows() == {"train": len(rows) - 2}
    assert ds.classes == sorted({r[0] for r in rows})  # the default target, species


def test_missing_cache_without_download_names_the_folder(tmp_path, no_network):
    root = tmp_path / "data"
    with pytest.raises(SpecError) as e:
        load_dataset(DataConfig(openml=23512, root=str(root)), task="binary", seed=0)
    message = str(e.value)
    assert e.value.key == "openml"
    assert f"not in the cache folder {root / 'openml'}" in message and "download: false" in message
    assert "data.download=true" in message and "copy" in message
    assert not root.exists()  # nothing created


def test_partly_filled_cache_names_the_missing_file(tmp_path, no_network):
    root = make_cache(tmp_path, without_data=True)
    with pytest.raises(SpecError, match=r"not cached: https://\S+/data/v1/download/61/iris\.arff") as e:
        load_dataset(DataConfig(openml=61, root=str(root)), task="multiclass", seed=0)
    assert e.value.key == "openml"


def test_download_failure_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    from sklearn.datasets import _openml

    calls = []

    def offline(request, *args, **kwargs):
        calls.append(request.full_url)
        raise URLError("[Errno 101] Network is unreachable")

    slept = []  # sklearn's pauses between retries, recorded instead of waited for
    monkeypatch.setattr(_openml, "urlopen", offline)
    monkeypatch.setattr(_openml, "time", SimpleNamespace(sleep=slept.append))
    root = tmp_path / "data"
    with pytest.raises(SpecError) as e:
        load_dataset(DataConfig(openml=23512, root=str(root), download=True), task="binary", seed=0)
    # sklearn retries its first request 3 times, 1 s apart (it does not pass n_retries on to it): ~3 s
    # offline, then gives up; no long back-off, no hang.
    assert len(calls) == 4 and sum(slept) <= 3
    message = str(e.value)
    assert calls and calls[0].endswith("/api/v1/json/data/23512")
    assert "the download failed: [Errno 101] Network is unreachable" in message
    assert str(root / "openml") in message and "data.download=true" in message


def test_config_error_points_at_the_openml_line(tmp_path, no_network):
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  openml: 23512\n  root: cache\nmodel:\n  layers:\n    - {type: dense, units: 1, "
                      "activation: sigmoid}\nloss: bce\n")
    from dlcli.engine.setup import prepare

    with pytest.raises(ConfigError, match=r"c\.yaml, line 2: data\.openml: OpenML data set 23512 is not in the cache"):
        prepare(load_config(config))
