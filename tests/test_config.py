"""The config schema: defaults, aliases, overrides and messages a person can act on."""

import pytest
import yaml

from dlcli.config import load_config, parse_key_path
from dlcli.errors import ConfigError

BASE = """\
name: t
data:
  dataset: iris
model:
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 3, activation: softmax}
loss: categorical_crossentropy
"""


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(tmp_path, text, *overrides):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), overrides)
    return str(info.value)


def test_defaults_fill_the_resolved_config(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    r = cfg.resolved()
    assert r["optimizer"]["name"] == "adam" and r["optimizer"]["lr"] == 0.001
    assert r["optimizer"]["weight_decay"] == 0.0
    assert r["schedule"]["name"] == "constant"
    assert r["train"]["epochs"] == 10 and r["train"]["batch_size"] == 32 and r["train"]["device"] == "auto"
    assert r["model"]["layers"][0] == {"type": "dense", "activation": "relu", "units": 8, "use_bias": True}
    assert cfg.task_kind == "multiclass" and cfg.metric_names == ["accuracy"]


def test_resolved_config_loads_back_to_the_same_config(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["optimizer.lr=0.05", "schedule={name: step, step_size: 2}"])
    again = load_config(write(tmp_path, yaml.safe_dump(cfg.resolved()), "resolved.yaml"))
    assert again.resolved() == cfg.resolved()


def test_keras_names_are_normalized(tmp_path):
    text = BASE.replace("type: dense, units: 8", "type: Dense, units: 8").replace(
        "categorical_crossentropy", "sparse_categorical_crossentropy")
    text += "optimizer: {name: Adam, learning_rate: 0.01}\nschedule: ExponentialLR\n"
    cfg = load_config(write(tmp_path, text))
    assert cfg.model.layers[0]["type"] == "dense"
    assert cfg.loss["name"] == "categorical_crossentropy"
    assert cfg.optimizer["name"] == "adam" and cfg.optimizer["lr"] == 0.01
    assert cfg.schedule["name"] == "exponential"


def test_overrides_set_nested_keys_and_list_items(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["train.epochs=3", "optimizer.lr=0.5", "model.layers[0].units=16",
                                              "data.split.val=0.25"])
    assert cfg.train.epochs == 3 and cfg.optimizer["lr"] == 0.5
    assert cfg.model.layers[0]["units"] == 16 and cfg.data.split.val == 0.25


def test_override_of_a_string_spec_turns_it_into_a_mapping(tmp_path):
    cfg = load_config(write(tmp_path, BASE + "optimizer: sgd\n"), ["optimizer.momentum=0.9"])
    assert cfg.optimizer["name"] == "sgd" and cfg.optimizer["momentum"] == 0.9


def test_message_names_file_line_and_key_path(tmp_path):
    msg = problems(tmp_path, BASE.replace("units: 8", "units: -3"))
    assert "c.yaml, line 6: model.layers[0].units: must be a positive integer, got -3" in msg


def test_every_problem_is_reported_at_once(tmp_path):
    text = BASE.replace("units: 8", "units: -3").replace("activation: softmax", "activation: softmx")
    msg = problems(tmp_path, text + "train: {epochs: 0}\nlearning: 1\n")
    for fragment in ["model.layers[0].units", "model.layers[1].activation", "did you mean 'softmax'",
                     "train.epochs", "unknown key 'learning'"]:
        assert fragment in msg


@pytest.mark.parametrize("change,fragment", [
    (("loss:", "los:"), "unknown key 'los'; did you mean 'loss'"),
    (("type: dense, units: 8", "type: Dens, units: 8"), "unknown layer type 'Dens'; did you mean 'dense'"),
    (("activation: relu", "activation: rellu"), "unknown activation 'rellu'; did you mean 'relu'"),
    (("categorical_crossentropy", "categorical_crosentropy"), "did you mean 'categorical_crossentropy'"),
    (("dataset: iris", "dataset: iriss"), "must be one of breast_cancer, digits, iris, wine, diabetes, got 'iriss'; did you mean 'iris'"),
    (("units: 8,", "units: 8, unitz: 3,"), "unknown key 'unitz'; did you mean 'units'"),
    (("units: 8", "units: eight"), "model.layers[0].units: must be an integer, got 'eight'"),
])
def test_misspellings_get_a_suggestion(tmp_path, change, fragment):
    assert fragment in problems(tmp_path, BASE.replace(*change))


def test_unknown_optimizer_and_schedule(tmp_path):
    msg = problems(tmp_path, BASE + "optimizer: {name: adamm}\nschedule: {name: cosin}\n")
    assert "optimizer: unknown optimizer 'adamm'; did you mean 'adam'" in msg
    assert "schedule: unknown schedule 'cosin'; did you mean 'cosine'" in msg


def test_malformed_yaml_names_its_line(tmp_path):
    msg = problems(tmp_path, "name: t\nmodel:\n  layers: [\n    {type: dense\nloss: mse\n")
    assert "malformed YAML" in msg and "line " in msg


def test_bad_override_names_the_override(tmp_path):
    msg = problems(tmp_path, BASE, "train.epochs=abc")
    assert "train.epochs: must be an integer, got 'abc' (from the command-line override 'train.epochs=abc')" in msg
    assert "must look like key.path=value" in problems(tmp_path, BASE, "=3")


def test_data_sources_are_exclusive_and_files_need_a_target(tmp_path):
    assert "exactly one of path" in problems(tmp_path, BASE.replace("dataset: iris", "dataset: iris\n  path: x.csv"))
    assert "data.target is required" in problems(tmp_path, BASE.replace("dataset: iris", "path: x.csv"))


def test_split_must_leave_training_rows(tmp_path):
    msg = problems(tmp_path, BASE.replace("dataset: iris", "dataset: iris\n  split: {val: 0.5, test: 0.5}"))
    assert "val + test must be below 1" in msg


def test_metrics_must_fit_the_task(tmp_path):
    msg = problems(tmp_path, BASE + "metrics: [accuracy, r2, acuracy]\n")
    assert "metrics[1]" in msg or "metrics[2]: unknown metric 'acuracy'; did you mean 'accuracy'" in msg


def test_early_stopping_monitor_is_checked(tmp_path):
    msg = problems(tmp_path, BASE + "train: {early_stopping: {monitor: val_auc}}\n")
    assert "train.early_stopping.monitor: unknown monitor 'val_auc'" in msg


def test_early_stopping_may_monitor_a_train_metric(tmp_path):
    # As the README says: train_loss, val_loss, train_<metric> or val_<metric>.
    cfg = load_config(write(tmp_path, BASE + "train: {early_stopping: {monitor: train_accuracy}}\n"))
    assert cfg.monitor == "train_accuracy"
    msg = problems(tmp_path, BASE + "train: {early_stopping: {monitor: train_accuracy}, train_metrics: false}\n")
    assert "train.early_stopping.monitor: 'train_accuracy' is logged with train.train_metrics: true" in msg
    assert "choose from" not in msg and "train_loss, val_loss, val_accuracy" in msg


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    sub = tmp_path / "configs"
    sub.mkdir()
    cfg = load_config(write(sub, BASE.replace("dataset: iris", "path: ../data/x.csv\n  target: y")))
    assert cfg.data.path == str((tmp_path / "data" / "x.csv").resolve())


def test_parse_key_path():
    assert parse_key_path("model.layers[2].units") == ["model", "layers", 2, "units"]


def test_params_only_optimizer_is_not_blamed_when_another_key_fails(tmp_path):
    # A top-level problem must not make `optimizer: {lr: ...}` (the default optimizer) look wrong too.
    msg = problems(tmp_path, BASE + "optimizer: {lr: 0.1}\ntrian: {epochs: 2}\n")
    assert "unknown key 'trian'" in msg
    assert ": optimizer:" not in msg and len(msg.splitlines()) == 1
    msg = problems(tmp_path, BASE + "optimizer: {lr: 0.1, momentun: 1}\ntrian: {epochs: 2}\n")
    assert "optimizer.momentun: unknown key 'momentun'" in msg


# Issue 17: values are checked by the schema where they are written, with the line and the advice.
@pytest.mark.parametrize("change,overrides,fragment", [
    (("name: t", "seed: abc"), (), "c.yaml, line 1: seed: must be an integer, got 'abc'"),
    (("name: t", "seed: 1.5"), (), "c.yaml, line 1: seed: must be an integer, got 1.5"),
    (("name: t", "seed: true"), (), "c.yaml, line 1: seed: must be an integer, got True"),
    (("name: t", "seed: -1"), (), "c.yaml, line 1: seed: must be at least 0, got -1"),
    (("name: t", f"seed: {2**64}"), (), f"c.yaml, line 1: seed: must be at most {2**32 - 1}, got {2**64}"),
    (("name: t", "name: ../../escaped"), (), "c.yaml, line 1: name: is a path, not one folder name: a run name is "
                                             "one folder name under runs/"),
    (("name: t", "name: /tmp/elsewhere"), (), "line 1: name: is a path, not one folder name"),
    (("name: t", "name: '..'"), (), "line 1: name: is a path"),
    (("name: t", 'name: "a\\0b"'), (), "line 1: name: holds a NUL character"),
    (("name: t", f"name: {'é' * 101}"), (), "line 1: name: is 202 bytes long, over 200"),
    (("name: t", "name: t"), ("name=a/b",), "c.yaml: name: is a path, not one folder name"),
    (("loss: categorical_crossentropy", "loss: categorical_crossentropy\noptimizer: {name: adam, lr: .inf}"), (),
     "c.yaml, line 9: optimizer.lr: must be a finite number, got inf"),
    (("loss: categorical_crossentropy", "loss: categorical_crossentropy\noptimizer: {lr: .nan}"), (),
     "c.yaml, line 9: optimizer.lr: must be a finite number, got nan"),
    (("name: t", "name: t"), ("train.clipnorm=.inf",), "train.clipnorm: must be a finite number, got inf"),
    (("name: t", "name: t"), ("optimizer=",), "c.yaml: optimizer: is empty; give a name or {name: ..., <params>}, "
                                               "e.g. adam or {name: adam, lr: 0.001} (from the command-line "
                                               "override 'optimizer=')"),
    (("loss: categorical_crossentropy", "loss:"), (), "c.yaml, line 8: loss: is empty"),
    (("loss: categorical_crossentropy", 'loss: {name: custom, function: "os.path:join"}'), (),
     "c.yaml, line 8: loss.function: must be 'path/to/file.py:function' (a Python file, relative to the config), "
     "got 'os.path:join'"),
    (("loss: categorical_crossentropy", "loss: {name: class_balanced, weights: [0, 0.0, 0]}"), (),
     "c.yaml, line 8: loss.weights: are all zero, so no sample would count; give at least one class a weight "
     "above 0"),
    (("name: t", "name: t\ntrain: {device: gpu}"), (),
     "c.yaml, line 2: train.device: must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
])
def test_values_are_checked_where_they_are_written(tmp_path, change, overrides, fragment):
    assert fragment in problems(tmp_path, BASE.replace(*change), *overrides)


def test_a_run_name_of_one_folder_is_kept(tmp_path):
    assert load_config(write(tmp_path, BASE.replace("name: t", "name: 'exp-1 (lr 0.1)'"))).name == "exp-1 (lr 0.1)"
    assert load_config(write(tmp_path, BASE.replace("name: t", f"name: {'a' * 200}"))).name == "a" * 200
