"""One checking path: every named spec, whether in a config or built from Python, goes through its registry."""

import importlib

import pytest
import torch

from dlcli.commands.listing import SECTIONS
from dlcli.config import load_config
from dlcli.config.schema import SOURCES
from dlcli.data import SOURCES as DATA_SOURCES
from dlcli.errors import ConfigError, SpecError
from dlcli.nn.losses import LOSSES, loss_task
from dlcli.nn.optimizers import build_optimizer
from dlcli.nn.schedules import build_schedule
from dlcli.registry import HOMES, lookup

BASE = {"data": {"dataset": "iris"}, "model": {"layers": [{"type": "dense", "units": 3, "activation": "softmax"}]},
        "loss": "categorical_crossentropy"}


def config_error(**section) -> str:
    with pytest.raises(ConfigError) as info:
        load_config({**BASE, **section})
    return str(info.value)


def test_each_kind_is_looked_up_in_the_module_that_fills_it():
    for key, home in HOMES.items():
        module = importlib.import_module(home)
        registries = [v for v in vars(module).values() if v is lookup(key)]
        assert registries, f"{home} does not define the {key} registry"


@pytest.mark.parametrize(("section", "build", "key", "message"), [
    ({"optimizer": {"name": "adam", "lr": -1}},
     lambda: build_optimizer({"name": "adam", "lr": -1}, [torch.nn.Parameter(torch.zeros(1))]),
     "lr", "must be a positive number, got -1"),
    ({"optimizer": {"name": "sgd", "momentun": 0.9}},
     lambda: build_optimizer({"name": "sgd", "momentun": 0.9}, [torch.nn.Parameter(torch.zeros(1))]),
     "momentun", "unknown key 'momentun'; did you mean 'momentum'?"),
    ({"schedule": {"name": "step", "step_size": 2, "warmup_epochs": -1}},
     lambda: build_schedule({"name": "step", "step_size": 2, "warmup_epochs": -1},
                            torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), epochs=3),
     "warmup_epochs", "must be at least 0, got -1"),
])
def test_a_config_and_a_builder_say_the_same_about_a_spec(section, build, key, message):
    assert f"{next(iter(section))}.{key}: {message}" in config_error(**section)
    with pytest.raises(SpecError) as info:
        build()
    assert info.value.key == key and str(info.value).startswith(message)


def test_a_loss_can_take_its_task_from_its_base():
    assert loss_task({"name": "class_balanced", "base": "bce"}) == "binary"
    assert loss_task({"name": "class_balanced", "base": "focal"}) == "classification"
    assert loss_task("class_balanced") == "classification" and LOSSES.get("class_balanced").tasks_from == "base"


def test_the_config_and_the_data_name_the_same_sources():
    assert tuple(DATA_SOURCES.names()) == SOURCES


@pytest.mark.parametrize(("title", "registry"), SECTIONS)
def test_every_entry_says_what_it_does(title, registry):
    undocumented = [name for name in registry.names() if not registry.get(name).doc]
    assert undocumented == [], f"{title} without a docstring (the README's tables show it)"
