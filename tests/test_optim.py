"""Optimizers and lr schedules, checked against PyTorch's own schedulers and hand-worked numbers."""

from __future__ import annotations

import io
import math

import pytest
import torch
from pydantic import ValidationError

from dlcli.errors import SpecError
from dlcli.nn.optimizers import OPTIMIZERS, build_optimizer
from dlcli.nn.schedules import SCHEDULE_COMMON_KEYS, SCHEDULES, build_schedule, monitor_mode


def make_opt(lr: float = 0.1, groups: tuple[float, ...] | None = None) -> torch.optim.Optimizer:
    if groups is None:
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": g} for g in groups])


def run(schedule, epochs: int, metrics: list[dict] | None = None) -> list[float]:
    """The lr each of `epochs` epochs runs at, stepping the schedule after each."""
    lrs = []
    for e in range(epochs):
        lrs.append(schedule.lr)
        assert schedule.lr == schedule.optimizer.param_groups[0]["lr"]
        schedule.step(metrics[e] if metrics else None)
    return lrs


def torch_lrs(make_scheduler, epochs: int, lr: float = 0.1) -> list[float]:
    opt = make_opt(lr)
    scheduler = make_scheduler(opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return lrs


# ---------------------------------------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    "spec, reference",
    [
        (
            {"name": "step", "step_size": 3, "gamma": 0.5},
            lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.5),
        ),
        (
            {"name": "MultiStepLR", "milestones": [2, 5, 11]},
            lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [2, 5, 11], 0.1),
        ),
        ({"name": "exponential", "gamma": 0.8}, lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.8)),
        (
            {"name": "cosine", "eta_min": 0.001},  # t_max defaults to the 20 epochs
            lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20, eta_min=0.001),
        ),
        ("constant", lambda o: torch.optim.lr_scheduler.ConstantLR(o, factor=1.0)),
    ],
)
def test_closed_form_schedules_match_torch(spec, reference):
    ours = run(build_schedule(spec, make_opt(), epochs=20), 20)
    assert ours == pytest.approx(torch_lrs(reference, 20), rel=1e-9, abs=1e-12)


def test_none_is_constant():
    assert run(build_schedule(None, make_opt(0.3), epochs=5), 5) == [0.3] * 5


def test_cosine_clamps_after_t_max():
    ours = run(
        build_schedule({"name": "cosine_decay", "t_max": 8, "eta_min": 0.01}, make_opt(), epochs=12), 12
    )
    ref = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=8, eta_min=0.01), 9)
    assert ours[:9] == pytest.approx(ref)
    assert ours[8:] == pytest.approx([0.01] * 4)


def test_cosine_t_max_defaults_to_epochs_after_warmup():
    lrs = run(build_schedule({"name": "cosine", "warmup_epochs": 2}, make_opt(1.0), epochs=10), 10)
    # warmup 0.5, 1.0, then cosine over t_max = 8: epoch 2 + k runs at (1 + cos(pi k / 8)) / 2
    assert lrs == pytest.approx([0.5, 1.0] + [(1 + math.cos(math.pi * k / 8)) / 2 for k in range(8)])


def test_inverse_time_decay_keras_formula():
    spec = {"name": "InverseTimeDecay", "decay_rate": 0.5, "decay_steps": 2, "interval": "epoch"}
    # 0.1 / (1 + 0.5 * e / 2)
    assert run(build_schedule(spec, make_opt(0.1), epochs=5), 5) == pytest.approx(
        [0.1, 0.08, 0.1 / 1.5, 0.1 / 1.75, 0.05]
    )
    stair = run(build_schedule({**spec, "staircase": True}, make_opt(0.1), epochs=5), 5)
    assert stair == pytest.approx([0.1, 0.1, 0.1 / 1.5, 0.1 / 1.5, 0.05])


def test_warmup_then_exponential_by_hand():
    spec = {"name": "exponential", "gamma": 0.5, "warmup_epochs": 4}
    lrs = run(build_schedule(spec, make_opt(0.1), epochs=8), 8)
    assert lrs == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.05, 0.025, 0.0125])


def test_schedule_sets_epoch_zero_lr_on_build():
    opt = make_opt(0.1)
    build_schedule({"name": "step", "step_size": 1, "warmup_epochs": 4}, opt, epochs=8)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)


def test_multiple_param_groups_scale_each_base_lr():
    opt = make_opt(groups=(0.1, 0.01))
    schedule = build_schedule({"name": "cosine", "warmup_epochs": 2}, opt, epochs=12)
    seen = []
    for _ in range(12):
        seen.append([g["lr"] for g in opt.param_groups])
        schedule.step()
    ref_opt = make_opt(groups=(0.1, 0.01))
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=10)
    expected = [[0.05, 0.005], [0.1, 0.01]]
    for _ in range(10):
        expected.append([g["lr"] for g in ref_opt.param_groups])
        ref_opt.step()
        ref.step()
    assert seen == [pytest.approx(row) for row in expected]


# --------------------------------------------------------------------------------------- reduce on plateau


def losses(*values: float) -> list[dict]:
    return [{"loss": 9.0, "val_loss": v} for v in values]


def test_reduce_on_plateau_by_hand():
    spec = {"name": "plateau", "patience": 2, "factor": 0.5}
    schedule = build_schedule(spec, make_opt(1.0), epochs=10)
    assert schedule.monitor == "val_loss"
    # best at epochs 1 and 5; the third epoch in a row without improvement (> patience) halves the lr
    lrs = run(schedule, 9, losses(1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8))
    assert lrs == [1.0] * 5 + [0.5] * 4
    assert schedule.lr == 0.25


def test_reduce_on_plateau_min_lr_and_cooldown():
    spec = {"name": "ReduceLROnPlateau", "patience": 0, "factor": 0.5, "cooldown": 1, "min_lr": 0.3}
    lrs = run(build_schedule(spec, make_opt(1.0), epochs=8), 7, losses(1, 2, 2, 2, 2, 2, 2))
    # epoch 1 bad -> 0.5; epoch 2 in cooldown; epoch 3 bad -> max(0.25, 0.3); ...
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.3, 0.3, 0.3]


def test_reduce_on_plateau_mode_auto_maximizes_accuracy():
    assert monitor_mode("val_accuracy") == "max"
    assert monitor_mode("val_auc") == "max"
    assert monitor_mode("val_loss") == "min"
    assert monitor_mode("val_accuracy", "min") == "min"
    metrics = [{"val_accuracy": a} for a in (0.5, 0.6, 0.7, 0.8, 0.8)]
    spec = {"name": "plateau", "monitor": "val_accuracy", "patience": 0}
    assert run(build_schedule(spec, make_opt(1.0), epochs=5), 5, metrics) == [1.0] * 5
    rising_is_bad = run(build_schedule({**spec, "mode": "min"}, make_opt(1.0), epochs=5), 5, metrics)
    assert rising_is_bad == pytest.approx([1.0, 1.0, 0.1, 0.01, 0.001])


def test_reduce_on_plateau_ignores_warmup_epochs():
    spec = {"name": "plateau", "patience": 0, "factor": 0.5, "warmup_epochs": 2}
    # the low warmup losses must not become the best value the plateau compares against
    lrs = run(build_schedule(spec, make_opt(1.0), epochs=6), 6, losses(0.1, 0.1, 1.0, 0.9, 0.9, 0.8))
    assert lrs == [0.5, 1.0, 1.0, 1.0, 1.0, 0.5]


def test_reduce_on_plateau_missing_monitor_names_available_keys():
    schedule = build_schedule({"name": "plateau", "monitor": "val_los"}, make_opt(), epochs=3)
    with pytest.raises(SpecError) as info:
        schedule.step({"loss": 1.0, "val_loss": 1.0})
    assert info.value.key == "monitor"
    assert "val_loss" in str(info.value) and "did you mean" in str(info.value)
    with pytest.raises(SpecError):
        schedule.step(None)


# ------------------------------------------------------------------------------------------------- resume


def save(obj) -> dict:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer)  # weights_only: the states must be plain data


@pytest.mark.parametrize(
    "spec, metrics",
    [
        ({"name": "exponential", "gamma": 0.7, "warmup_epochs": 3}, None),
        (
            {"name": "plateau", "patience": 1, "factor": 0.5, "warmup_epochs": 1},
            losses(5, 1.0, 1.0, 1.0, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6),
        ),
        ({"name": "cosine", "warmup_epochs": 2}, None),
    ],
)
@pytest.mark.parametrize("optimizer_first", [True, False])
def test_state_dict_resume_is_exact(spec, metrics, optimizer_first):
    def fresh():
        model = torch.nn.Linear(2, 1)
        opt = build_optimizer({"name": "adam", "lr": 0.1}, model.parameters())
        return opt, build_schedule(spec, opt, epochs=10)

    _, whole = fresh()
    uninterrupted = run(whole, 10, metrics)

    opt, schedule = fresh()
    first = run(schedule, 5, metrics)
    state = save({"optimizer": opt.state_dict(), "schedule": schedule.state_dict()})

    opt, schedule = fresh()
    if optimizer_first:
        opt.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
    else:
        schedule.load_state_dict(state["schedule"])
        opt.load_state_dict(state["optimizer"])
    second = run(schedule, 5, metrics[5:] if metrics else None)
    assert first + second == uninterrupted
    assert len(set(uninterrupted)) > 3  # the schedule did something


# --------------------------------------------------------------------------------------- schedule specs


MINIMAL = {"step": {"step_size": 2}, "multistep": {"milestones": [2]},
           "exponential_decay": {"decay_steps": 2, "decay_rate": 0.5},
           "piecewise_constant": {"boundaries": [2], "values": [0.2, 0.1]}}


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_every_schedule_accepts_warmup(name):
    assert SCHEDULE_COMMON_KEYS == {"warmup_epochs"}
    assert "warmup_epochs" not in SCHEDULES.get(name).params.model_fields
    spec = {"name": name, "warmup_epochs": 2, **MINIMAL.get(name, {})}
    lrs = run(build_schedule(spec, make_opt(0.2), epochs=4), 2, [{"val_loss": 1.0}] * 2)
    assert lrs == pytest.approx([0.1, 0.2])


def test_schedule_validation():
    with pytest.raises(ValidationError):
        SCHEDULES.get("multistep").params(milestones=[5, 3])
    with pytest.raises(ValidationError):
        SCHEDULES.get("multistep").params(milestones=[])
    with pytest.raises(ValidationError):
        SCHEDULES.get("step").params()  # step_size is required
    with pytest.raises(ValidationError):
        SCHEDULES.get("exponential").params(gamma=1.5)
    with pytest.raises(ValidationError):
        SCHEDULES.get("reduce_on_plateau").params(mode="sideways")
    with pytest.raises(SpecError, match="must be at least 0, got -1") as info:
        build_schedule({"name": "step", "step_size": 2, "warmup_epochs": -1}, make_opt(), epochs=3)
    assert info.value.key == "warmup_epochs"
    with pytest.raises(SpecError) as info:
        build_schedule("cosin_annealing", make_opt(), epochs=3)
    assert info.value.key == "name" and "did you mean" in str(info.value)
    assert SCHEDULES.get("ReduceLROnPlateau").name == "reduce_on_plateau"
    assert SCHEDULES.get("CosineAnnealingLR").name == "cosine"


# ------------------------------------------------------------------------------------------------ optimizers


def quadratic_descends(opt: torch.optim.Optimizer, param: torch.nn.Parameter, steps: int = 5) -> bool:
    target = torch.tensor([1.0, -2.0, 3.0])

    def loss() -> torch.Tensor:
        return ((param - target) ** 2).sum()

    before = loss().item()
    for _ in range(steps):
        opt.zero_grad()
        loss().backward()
        opt.step()
    return loss().item() < before


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("sgd", {"lr": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}),
        ("adam", {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8, "amsgrad": False, "weight_decay": 0.0}),
        ("adamw", {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}),
        ("rmsprop", {"lr": 0.001, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "centered": False}),
        ("adagrad", {"lr": 0.01, "lr_decay": 0.0, "eps": 1e-10, "initial_accumulator_value": 0.0}),
        (
            {"name": "SGD", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True},
            {"lr": 0.1, "nesterov": True},
        ),
        ({"name": "Adam", "learning_rate": 0.01, "epsilon": 1e-7, "beta_1": 0.8}, {"betas": (0.8, 0.999)}),
        (
            {"name": "AdamW", "betas": [0.5, 0.9], "weight_decay": 0.0},
            {"betas": (0.5, 0.9), "weight_decay": 0},
        ),
        ({"name": "RMSprop", "learning_rate": 0.01, "rho": 0.9}, {"lr": 0.01, "alpha": 0.9}),
        ({"name": "Adagrad", "learning_rate": 0.1, "epsilon": 1e-7}, {"lr": 0.1, "eps": 1e-7}),
    ],
)
def test_optimizers_build_and_descend(spec, expected):
    param = torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer(spec, [param])
    group = opt.param_groups[0]
    assert {key: group[key] for key in expected} == expected
    assert quadratic_descends(opt, param)


def test_optimizer_takes_param_groups():
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer({"name": "sgd", "lr": 0.1}, [{"params": [a]}, {"params": [b], "lr": 0.5}])
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]


def test_optimizer_validation():
    with pytest.raises(SpecError) as info:
        build_optimizer({"name": "sgd", "nesterov": True}, [torch.nn.Parameter(torch.zeros(1))])
    assert info.value.key == "nesterov" and "momentum" in str(info.value)
    with pytest.raises(SpecError) as info:
        build_optimizer(
            {"name": "adam", "betas": [0.9, 0.99], "beta_1": 0.8}, [torch.nn.Parameter(torch.zeros(1))]
        )
    assert info.value.key == "betas"
    with pytest.raises(ValidationError):
        OPTIMIZERS.get("adam").params(momentum=0.9)  # unknown parameter
    with pytest.raises(ValidationError):
        OPTIMIZERS.get("adam").params(lr=0.1, learning_rate=0.1)  # one of the two spellings
    with pytest.raises(ValidationError):
        OPTIMIZERS.get("sgd").params(weight_decay=-1)
    with pytest.raises(ValidationError):
        OPTIMIZERS.get("sgd").params(lr=0)
    with pytest.raises(SpecError) as info:
        build_optimizer("adamm", [torch.nn.Parameter(torch.zeros(1))])
    assert info.value.key == "name" and "adam" in str(info.value)
    assert OPTIMIZERS.names() == ["sgd", "adam", "adamw", "rmsprop", "adagrad"]
    assert OPTIMIZERS.get("SGD").name == "sgd" and OPTIMIZERS.get("AdamW").name == "adamw"


# ------------------------------------------------------------------------------- per-step (Keras) schedules


def run_steps(schedule, epochs: int, steps_per_epoch: int) -> tuple[list[float], list[float]]:
    """(the lr of every optimizer step, the lr each epoch starts at), as the training loop steps a schedule."""
    steps, starts = [], []
    for _ in range(epochs):
        starts.append(schedule.lr)
        for _ in range(steps_per_epoch):
            steps.append(schedule.lr)
            schedule.step_batch()
        schedule.step()
    return steps, starts


def test_every_schedule_has_an_interval():
    defaults = {name: SCHEDULES.get(name).params.model_fields["interval"].default for name in SCHEDULES.names()}
    keras = {"exponential_decay", "inverse_time", "piecewise_constant"}
    assert {name for name, default in defaults.items() if default == "step"} == keras
    assert set(defaults.values()) == {"epoch", "step"}


def test_exponential_decay_counts_optimizer_steps_as_keras_does():
    # Keras: initial_learning_rate * decay_rate ^ (step / decay_steps), 3 steps an epoch.
    spec = {"name": "ExponentialDecay", "initial_learning_rate": 0.1, "decay_steps": 2, "decay_rate": 0.5}
    steps, starts = run_steps(build_schedule(spec, make_opt(7.0), epochs=2, steps_per_epoch=3), 2, 3)
    assert steps == pytest.approx([0.1 * 0.5 ** (t / 2) for t in range(6)])
    assert starts == pytest.approx([0.1, 0.1 * 0.5**1.5])  # metrics.csv's lr: the epoch's first step's
    stair, _ = run_steps(build_schedule({**spec, "staircase": True}, make_opt(), epochs=2, steps_per_epoch=3), 2, 3)
    assert stair == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_inverse_time_decay_per_step_is_keras_old_decay():
    # Keras 2's SGD(lr=0.1, decay=1.0): lr / (1 + decay * iterations).
    spec = {"name": "inverse_time", "decay_rate": 1.0}
    steps, _ = run_steps(build_schedule(spec, make_opt(0.1), epochs=2, steps_per_epoch=2), 2, 2)
    assert steps == pytest.approx([0.1, 0.05, 0.1 / 3, 0.025])


def test_piecewise_constant_decay_by_hand():
    # values[0] for step <= 2, values[1] for 2 < step <= 4, values[2] after.
    spec = {"name": "PiecewiseConstantDecay", "boundaries": [2, 4], "values": [1.0, 0.5, 0.1]}
    steps, _ = run_steps(build_schedule(spec, make_opt(), epochs=2, steps_per_epoch=4), 2, 4)
    assert steps == [1.0, 1.0, 1.0, 0.5, 0.5, 0.1, 0.1, 0.1]
    with pytest.raises(SpecError, match="must have one more entry than boundaries"):
        build_schedule({**spec, "values": [1.0, 0.5]}, make_opt(), epochs=2)


def test_an_epoch_schedule_may_count_steps_and_warmup_stays_in_epochs():
    spec = {"name": "step", "step_size": 2, "gamma": 0.5, "interval": "step", "warmup_epochs": 1}
    steps, starts = run_steps(build_schedule(spec, make_opt(1.0), epochs=3, steps_per_epoch=3), 3, 3)
    # warmup epoch at lr0 * 1/1, then 1.0 * 0.5^(t // 2) over steps t = 0..5 after it
    assert steps == [1.0] * 3 + [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    assert starts == [1.0, 1.0, 0.5]
    cosine = build_schedule({"name": "cosine", "interval": "step"}, make_opt(1.0), epochs=2, steps_per_epoch=2)
    assert run_steps(cosine, 2, 2)[0] == pytest.approx([1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5,
                                                        (1 + math.cos(3 * math.pi / 4)) / 2])  # t_max: 4 steps


def test_a_per_step_schedule_resumes_exactly():
    spec = {"name": "exponential_decay", "decay_steps": 1, "decay_rate": 0.9}
    whole, _ = run_steps(build_schedule(spec, make_opt(), epochs=4, steps_per_epoch=3), 4, 3)
    schedule = build_schedule(spec, make_opt(), epochs=4, steps_per_epoch=3)
    first, _ = run_steps(schedule, 2, 3)
    state = save({"schedule": schedule.state_dict()})
    again = build_schedule(spec, make_opt(), epochs=4, steps_per_epoch=3)
    again.load_state_dict(state["schedule"])
    assert first + run_steps(again, 2, 3)[0] == whole
    assert state["schedule"]["steps"] == 6


def test_plateau_is_per_epoch_only():
    with pytest.raises(SpecError, match="must be epoch: reduce_on_plateau reads a metric once per epoch"):
        build_schedule({"name": "plateau", "interval": "step"}, make_opt(), epochs=2)
