"""Loss functions, by name: `loss: binary_crossentropy` or `loss: {name: focal, gamma: 2.0, alpha: 0.25}`.

A loss is called as `loss(raw, target)`, `raw` being the model's output *before* its output
activation. Cross-entropy and focal losses need a sigmoid (binary) or softmax (multiclass) output
and read `raw` as logits, so they never take the log of a saturated probability; the others apply
the output activation first and compare the predictions themselves.

Targets: binary -> float (N, 1) of 0/1; multiclass -> int64 (N,) class indices or float (N, C)
probability rows; regression -> float (N, k). The result is the mean over the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import AfterValidator, BeforeValidator, Field
from torch import Tensor, nn

from ..errors import SpecError
from ..registry import BINARY, CLASSIFICATION, MULTICLASS, REGRESSION, Registry, implied_task
from .activations import ACTIVATIONS, build_activation
from .custom import argument_order, function_ref, load_function, looks_like_ref


class LossRegistry(Registry):
    """`loss: my_losses.py:fn`, a Python file's function as Keras takes a function, is the custom loss
    `{name: custom, function: my_losses.py:fn}`."""

    def expand(self, spec: Any) -> Any:
        if isinstance(spec, str) and spec not in self and looks_like_ref(spec):
            return {"name": "custom", "function": spec}
        return spec


LOSSES = LossRegistry("loss")


@dataclass
class LossContext:
    task: str  # "binary" | "multiclass" | "regression"
    output_activation: str | None  # canonical name of the last layer's activation; None = linear
    activation: nn.Module | None  # that activation as a module (None = identity)
    class_counts: list[int] | None = None  # training-set count per class index; None for regression
    class_weight_sums: list[float] | None = None  # training-set event-weight sum per class (data.weight)
    config_dir: Path = Path(".")  # custom loss files are relative to this
    output_shape: tuple[int, ...] | None = None  # the model's, per sample: a custom loss is tried on it
    weighted: bool = False  # the events carry weights (data.weight, train.class_weight): a custom loss is tried with them


NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
Probability = Annotated[float, Field(ge=0, le=1)]
Alpha = Probability | list[Probability] | None
Base = Annotated[  # aliases such as "bce" are accepted and stored canonical
    Literal["binary_crossentropy", "categorical_crossentropy", "focal"] | None,
    BeforeValidator(lambda v: (LOSSES.canonical(v) or v) if isinstance(v, str) else v),
]


def _some_positive(weights: str | list[float]) -> str | list[float]:
    """All-zero class weights would make every sample weigh nothing: a loss of 0 that learns nothing."""
    if isinstance(weights, list) and weights and not any(weights):
        raise ValueError(f"are all zero, so no sample would count; give at least one class a weight above 0, "
                         f"got {weights}")
    return weights


Weights = Annotated[Literal["inverse_frequency", "effective_number"] | list[NonNegFloat], AfterValidator(_some_positive)]


class Loss(nn.Module):
    """mean(sample weight * terms(activation(raw), target)).

    The fused losses have no activation: their terms take logits. `class_weight` (one per class) is
    a buffer so `.to(device)` moves it; a sample's weight is its class's (for soft targets, the
    target-weighted mix).
    """

    def __init__(self, name: str, terms: Callable[[Tensor, Tensor], Tensor], *, task: str,
                 activation: nn.Module | None = None, class_weight: list[float] | None = None,
                 mean: Callable[[Tensor, Tensor], Tensor] | None = None):
        super().__init__()
        self.name, self.terms, self.task = name, terms, task
        self.note: str | None = None  # what `dlcli validate` tells about it (a custom loss's argument order)
        self.mean = mean  # the unweighted mean in one fused call, where torch has one: fewer ops per step
        self.activation = activation if activation is not None else nn.Identity()
        self.fused = activation is None
        weight = None if class_weight is None else torch.tensor(class_weight, dtype=torch.float32)
        self.register_buffer("class_weight", weight)

    def forward(self, raw: Tensor, target: Tensor, weight: Tensor | None = None,
                denominator: Tensor | None = None) -> Tensor:
        """The batch's mean loss; with event weights `weight` (N,), sum(w l) / sum(w) of the per-event losses
        l, or sum(w l) / denominator when given (data-parallel training: the global batch's sum(w) over the
        world size). A custom loss must return per-event losses to be weighted: one number is refused."""
        if weight is None and self.mean is not None and self.class_weight is None:  # fused: one call
            return self.mean(raw if self.fused else self.activation(raw), target)
        loss = self.terms(self.activation(raw), target)
        if self.class_weight is not None:
            loss = loss * _sample_weights(self.class_weight.to(raw), raw, target, self.task)
        if weight is None:
            return loss.mean()
        if loss.dim() == 0:
            raise SpecError(f"{self.name.removeprefix('custom, function=')} returns one number for the whole batch, "
                            "which the events' weights (data.weight, train.class_weight) cannot weigh; return the "
                            "per-event losses, shape (N,), which dlcli weighs as sum(w*l)/sum(w) (drop the final "
                            ".mean()), or remove the weights", key="function")
        per_event = loss.reshape(len(weight), -1).mean(dim=1)
        weight = weight.to(per_event.dtype)
        return (per_event * weight).sum() / (weight.sum() if denominator is None else denominator)

    def extra_repr(self) -> str:
        return self.name


def build_loss(spec: Any, ctx: LossContext | None = None) -> nn.Module:
    """The loss module of a spec (`"bce"`, `{"name": "focal", "gamma": 2.0}`) in a context, or of a Config.

        build_loss(load_config("configs/quickstart.yaml"))   # its loss:, task and output activation
        build_loss("bce", LossContext(task="binary", output_activation="sigmoid", activation=None))

    Call it as `loss(model(x), y)`: on the network's output before its activation. SpecError when the
    loss does not fit the task or the output layer.
    """
    if ctx is None:
        spec, ctx = _of_config(spec)
    entry, params, _ = LOSSES.parse(spec)
    return entry.builder(ctx, **params)


def _of_config(cfg: Any) -> tuple[Any, LossContext]:
    """A Config's loss spec and the context its model gives it (no class counts: they need the data)."""
    if not hasattr(cfg, "task_kind"):
        raise TypeError(f"build_loss({cfg!r}) needs a context: build_loss(spec, LossContext(task=..., "
                        "output_activation=..., activation=...)), or pass a Config (load_config(...)) alone")
    name, module = build_activation(cfg.output_activation)
    return cfg.loss, LossContext(task=cfg.task_kind, output_activation=name, activation=module,
                                 config_dir=cfg.base_dir)


def loss_task(spec: Any) -> str | None:
    """The task a loss implies: binary, multiclass, classification (either), regression; None for custom."""
    return implied_task(LOSSES.tasks(spec))


# ----------------------------------------------------------------------------------------------
# Regression: on the activated predictions


@LOSSES.register("mse", "mean_squared_error", "MeanSquaredError", tasks=REGRESSION)
def mse(ctx: LossContext) -> nn.Module:
    """mean((ŷ - y)²)."""
    return _regression(ctx, "mse", F.mse_loss)


@LOSSES.register("mae", "mean_absolute_error", "MeanAbsoluteError", tasks=REGRESSION)
def mae(ctx: LossContext) -> nn.Module:
    """mean(|ŷ - y|)."""
    return _regression(ctx, "mae", F.l1_loss)


@LOSSES.register("huber", "Huber", "huber_loss", tasks=REGRESSION)
def huber(ctx: LossContext, *, delta: Annotated[float, Field(gt=0)] = 1.0) -> nn.Module:
    """mean of ½x² where |x| <= delta, else delta (|x| - ½ delta); x = ŷ - y."""
    return _regression(ctx, "huber", partial(F.huber_loss, delta=delta))


def _regression(ctx: LossContext, name: str, fn: Callable[..., Tensor]) -> Loss:
    _check(ctx, name, "regression")
    return Loss(name, partial(_elementwise, fn), task=ctx.task, activation=ctx.activation)


def _elementwise(fn: Callable[..., Tensor], pred: Tensor, target: Tensor) -> Tensor:
    # Reshaping keeps an (N,) target against (N, 1) predictions from broadcasting to (N, N).
    return fn(pred, target.to(pred.dtype).reshape(pred.shape), reduction="none")


# ----------------------------------------------------------------------------------------------
# Classification: fused with the sigmoid / softmax, from the logits z


@LOSSES.register("binary_crossentropy", "bce", "BinaryCrossentropy", "binary_cross_entropy", "log_loss",
                 tasks=BINARY)
def binary_crossentropy(ctx: LossContext, *, label_smoothing: Fraction = 0.0) -> nn.Module:
    """-mean(y log σ(z) + (1 - y) log(1 - σ(z))); label smoothing as Keras': y -> y (1 - ls) + ls/2."""
    _check(ctx, "binary_crossentropy", "binary")
    return Loss("binary_crossentropy", partial(_bce_terms, smoothing=label_smoothing), task=ctx.task,
                mean=partial(_bce_terms, smoothing=label_smoothing, reduction="mean"))


@LOSSES.register("categorical_crossentropy", "cce", "CategoricalCrossentropy", "cross_entropy",
                 "sparse_categorical_crossentropy", "SparseCategoricalCrossentropy", "crossentropy", tasks=MULTICLASS)
def categorical_crossentropy(ctx: LossContext, *, label_smoothing: Fraction = 0.0) -> nn.Module:
    """-mean(Σ_c y_c log softmax(z)_c); label smoothing as torch's: y -> y (1 - ls) + ls/C."""
    _check(ctx, "categorical_crossentropy", "multiclass")
    return Loss("categorical_crossentropy", partial(_cce_terms, smoothing=label_smoothing), task=ctx.task,
                mean=partial(_cce_terms, smoothing=label_smoothing, reduction="mean"))


@LOSSES.register("focal", "focal_loss", "FocalLoss", "sigmoid_focal", "sigmoid_focal_loss", "BinaryFocalCrossentropy",
                 "CategoricalFocalCrossentropy", tasks=CLASSIFICATION)
def focal(ctx: LossContext, *, gamma: NonNegFloat = 2.0, alpha: Alpha = 0.25) -> nn.Module:
    """FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t) (Lin et al. 2017), binary or multiclass by the task.

    Binary: alpha_t = alpha for y = 1, 1 - alpha for y = 0, as torchvision's sigmoid_focal_loss.
    Multiclass: one number multiplies every class. A list gives alpha_t per class; None, no alpha.
    """
    _check(ctx, "focal", "classification")
    terms, alpha_weight = _focal_parts(ctx, gamma, alpha)
    return Loss(f"focal, gamma={gamma}, alpha={alpha}", terms, task=ctx.task, class_weight=alpha_weight)


@LOSSES.register("class_balanced", "balanced", "ClassBalanced", "class_balanced_loss", tasks=CLASSIFICATION,
                 tasks_from="base")
def class_balanced(ctx: LossContext, *, base: Base = None, weights: Weights = "inverse_frequency",
                   beta: Fraction = 0.999, normalize: bool = True, gamma: NonNegFloat = 2.0,
                   alpha: Alpha = None, totals: Literal["counts", "weights"] = "counts") -> nn.Module:
    """The base loss of each sample (bce, cce or focal) times its class's weight w_c: inverse_frequency (the
    lecture's 1/N_c), effective_number (Cui et al. 2019), or a list; normalized to sum to the class count.

    totals: weights takes N_c as the class's sum of event weights (data.weight) instead of its count.

    inverse_frequency: w_c ∝ 1/N_c, N_c = training samples of class c. With normalize: false the
    binary loss is the lecture's -(1/N)((1/N_i) Σ_(k∈i) y_k log ŷ_k + (1/N_j) Σ_(k∈j) (1-y_k) log(1-ŷ_k)).
    effective_number (Cui et al. 2019): w_c ∝ 1/E_(N_c), E_n = (1 - beta^n)/(1 - beta).
    normalize scales computed weights to sum to the number of classes; a list is used as given.
    base defaults to binary_crossentropy or categorical_crossentropy; gamma, alpha are focal's.
    """
    base = base or ("binary_crossentropy" if ctx.task == "binary" else "categorical_crossentropy")
    _check(ctx, f"class_balanced with base {base}", implied_task(LOSSES.get(base).tasks))
    if totals == "weights" and isinstance(weights, str):
        if ctx.class_weight_sums is None:
            raise SpecError("totals: weights takes the class totals from the event weights; set data.weight, "
                            "or use totals: counts", key="totals")
        ctx = replace(ctx, class_counts=ctx.class_weight_sums)
    class_weight = _class_weights(ctx, weights, beta, normalize)
    if base == "focal":
        terms, alpha_weight = _focal_parts(ctx, gamma, alpha)
        if alpha_weight is not None and len(alpha_weight) != len(class_weight):
            raise SpecError(f"alpha has {len(alpha_weight)} entries, weights {len(class_weight)}", "alpha")
        if alpha_weight is not None:  # for hard labels, alpha_t w_t is one per-class weight
            class_weight = [w * a for w, a in zip(class_weight, alpha_weight, strict=True)]
    else:
        terms = _bce_terms if base == "binary_crossentropy" else _cce_terms
    return Loss(f"class_balanced, base={base}", terms, task=ctx.task, class_weight=class_weight)


def _bce_terms(raw: Tensor, target: Tensor, smoothing: float = 0.0, reduction: str = "none") -> Tensor:
    y = target if target.dtype == raw.dtype and target.shape == raw.shape else target.to(raw.dtype).reshape(raw.shape)
    if smoothing:
        y = y * (1 - smoothing) + 0.5 * smoothing
    return F.binary_cross_entropy_with_logits(raw, y, reduction=reduction)


def _cce_terms(raw: Tensor, target: Tensor, smoothing: float = 0.0, reduction: str = "none") -> Tensor:
    y = target.to(raw.dtype) if _is_soft(raw, target) else target.reshape(-1).long()
    return F.cross_entropy(raw, y, reduction=reduction, label_smoothing=smoothing)


def _focal_parts(ctx: LossContext, gamma: float, alpha: float | list[float] | None):
    """The focal terms, and alpha as per-class weights (or inside the terms when one multiclass number)."""
    binary = ctx.task == "binary"
    if isinstance(alpha, list):
        return partial(_focal_terms, gamma=gamma, binary=binary), _check_length(ctx, alpha, "alpha")
    if binary:
        return partial(_focal_terms, gamma=gamma, binary=True), None if alpha is None else [1 - alpha, alpha]
    return partial(_focal_terms, gamma=gamma, binary=False, scale=1.0 if alpha is None else alpha), None


def _focal_terms(raw: Tensor, target: Tensor, gamma: float, binary: bool, scale: float = 1.0) -> Tensor:
    if binary:  # torchvision's sigmoid_focal_loss, operation for operation
        y = target.to(raw.dtype).reshape(raw.shape)
        p = torch.sigmoid(raw)
        p_t = p * y + (1 - p) * (1 - y)
        return F.binary_cross_entropy_with_logits(raw, y, reduction="none") * ((1 - p_t) ** gamma)
    log_p = F.log_softmax(raw, dim=-1)
    return -scale * (_one_hot(raw, target) * (1 - log_p.exp()) ** gamma * log_p).sum(-1)


def counts_classes(spec) -> bool:
    """Whether a loss takes its class weights from the training set's class counts (`weights:
    inverse_frequency` or `effective_number`): building it needs the training data."""
    return isinstance(spec, dict) and isinstance(spec.get("weights"), str)


def _class_weights(ctx: LossContext, weights: str | list[float], beta: float, normalize: bool) -> list[float]:
    if isinstance(weights, list):
        return _check_length(ctx, weights, "weights")
    by_hand = "or give weights: [w_0, w_1, ...] by hand"
    if ctx.class_counts is None:
        raise SpecError(f"{weights} weights need the training set's class counts, {by_hand}", key="weights")
    for c, n in enumerate(ctx.class_counts):
        if n <= 0:
            raise SpecError(f"class {c} has no training samples, so its {weights} weight is undefined; "
                            f"drop the class {by_hand}", key="weights")
    if weights == "inverse_frequency":
        raw = [1 / n for n in ctx.class_counts]
    else:
        raw = [(1 - beta) / (1 - beta**n) for n in ctx.class_counts]
    return [w * len(raw) / sum(raw) for w in raw] if normalize else raw


def _check_length(ctx: LossContext, values: list[float], key: str) -> list[float]:
    n = _n_classes(ctx)
    if n is not None and len(values) != n:
        raise SpecError(f"{key} has {len(values)} entries but there are {n} classes; give one per class", key)
    return values


def _sample_weights(class_weight: Tensor, raw: Tensor, target: Tensor, task: str) -> Tensor:
    if task == "binary":
        y = target.to(raw.dtype).reshape(raw.shape)
        return class_weight[1] * y + class_weight[0] * (1 - y)
    if class_weight.numel() != raw.shape[-1]:  # not caught at build time when class counts are unknown
        raise SpecError(f"{class_weight.numel()} class weights, but the model has {raw.shape[-1]} outputs")
    return _one_hot(raw, target) @ class_weight


def _is_soft(raw: Tensor, target: Tensor) -> bool:
    return target.is_floating_point() and target.shape == raw.shape


def _one_hot(raw: Tensor, target: Tensor) -> Tensor:
    """Class indices (N,) or probability rows (N, C) -> probability rows (N, C) in raw's dtype."""
    if _is_soft(raw, target):
        return target.to(raw.dtype)
    return F.one_hot(target.reshape(-1).long(), raw.shape[-1]).to(raw.dtype)


def _n_classes(ctx: LossContext) -> int | None:
    return 2 if ctx.task == "binary" else len(ctx.class_counts) if ctx.class_counts else None


def _check(ctx: LossContext, loss: str, needs: str) -> None:
    """SpecError, saying what would fit, unless `loss` (made for `needs`) fits the task and output layer."""
    fits = {"binary": "binary_crossentropy and a sigmoid output (1 unit)",
            "multiclass": "categorical_crossentropy and a softmax output"}
    if needs == "regression":
        if ctx.task != "regression":
            raise SpecError(f"{loss} is a regression loss; for a {ctx.task} task use "
                            f"{fits.get(ctx.task, 'custom')}, or set task: regression")
        return
    if ctx.task == "regression":
        raise SpecError(f"{loss} is a classification loss; for regression use mse, mae or huber")
    if needs == "binary" and ctx.task != "binary":
        raise SpecError(f"{loss} is for two classes; with {_n_classes(ctx) or 'more than two'} classes "
                        f"use {fits['multiclass']}")
    if needs == "multiclass" and ctx.task != "multiclass":
        raise SpecError(f"{loss} is for three or more classes; with two classes use {fits['binary']}")
    want = "sigmoid" if ctx.task == "binary" else "softmax"
    got = ACTIVATIONS.canonical(ctx.output_activation or "linear") or ctx.output_activation
    if got != want:
        raise SpecError(f"{loss} needs a {want} output layer (set the last layer's activation: {want}), "
                        f"got '{got}'")


# ----------------------------------------------------------------------------------------------
# Custom: a function of your own (nn/custom.py imports it: code that runs)


PROBE_ROWS = 2  # the made-up batch a custom loss is tried on


@LOSSES.register("custom", "custom_loss")
def custom(ctx: LossContext, *, function: Annotated[str, AfterValidator(function_ref)]) -> nn.Module:
    """fn(prediction, target) -> per-event losses (N,) or a scalar, from "path/to/file.py:fn" (relative to the config).

    `prediction` is the activated output: probabilities for a sigmoid or softmax output layer. The
    argument names decide the order: Keras' fn(y_true, y_pred) gets the target first. Per-event
    losses (N,) or (N, k) are averaged, or with event weights weighted as sum(w l) / sum(w); a
    scalar, the batch's own mean, is refused when the events are weighted.
    """
    fn = load_function(function, ctx.config_dir)
    target_first, loss_note = argument_order(fn, function)
    loss = Loss(f"custom, function={function}", partial(_call_custom, fn, function, target_first), task=ctx.task,
                activation=ctx.activation)
    loss.note = loss_note
    if ctx.output_shape is not None:
        _try_once(loss, ctx, function)
    return loss


def _call_custom(fn: Callable[..., Any], ref: str, target_first: bool, prediction: Tensor, target: Tensor) -> Tensor:
    """The function's scalar (a 0-d tensor), or its per-event losses (N,) or (N, k)."""
    out = fn(target, prediction) if target_first else fn(prediction, target)
    n = len(prediction)
    if isinstance(out, Tensor) and out.dim() in (1, 2) and out.shape[0] == n and (n > 1 or out.dim() == 2):
        return out
    if not isinstance(out, Tensor) or out.numel() != 1:
        got = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
        raise SpecError(f"custom loss '{ref}' must return per-event losses, shape ({n},) or ({n}, k), or a "
                        f"scalar tensor, got {got}", key="function")
    return out.reshape(())


def _try_once(loss: Loss, ctx: LossContext, ref: str) -> None:
    """Call a custom loss on a made-up batch shaped as training's, so that a function with the wrong
    signature, or returning a vector, a number or NaN, is refused when the config is checked (validate,
    and train before a run directory exists) rather than in the first step. Its own generator leaves
    the seeded global one as it was."""
    raw = torch.randn(PROBE_ROWS, *ctx.output_shape, generator=torch.Generator().manual_seed(0), requires_grad=True)
    target = _probe_target(ctx, raw)
    batch = f"a batch of {PROBE_ROWS} (prediction {_described(raw)}, target {_described(target)})"
    try:
        out = loss(raw, target)
    except SpecError as exc:
        raise SpecError(f"{exc} on {batch}", key="function") from None
    except Exception as exc:  # the user's code: whatever it raises is a problem with the config's loss
        raise SpecError(f"custom loss '{ref}' fails on {batch}: {type(exc).__name__}: {exc}", key="function") from None
    if not torch.isfinite(out):
        raise SpecError(f"custom loss '{ref}' returns {out.item()} on {batch}; it must be a finite number",
                        key="function")
    if not out.requires_grad:
        raise SpecError(f"custom loss '{ref}' returns a tensor without a gradient on {batch}; compute it from "
                        "prediction with torch operations (not .item(), float() or numpy)", key="function")
    if ctx.weighted:
        loss(raw, target, torch.ones(PROBE_ROWS))  # a scalar cannot be weighted: refused, saying what to return


def _probe_target(ctx: LossContext, raw: Tensor) -> Tensor:
    """Targets as the training loop passes them (engine/batches.py)."""
    if ctx.task == "binary":
        return torch.arange(PROBE_ROWS, dtype=torch.float32).remainder(2).reshape(-1, 1)
    if ctx.task == "multiclass":
        return torch.arange(PROBE_ROWS).remainder(raw.shape[-1])
    return torch.randn(raw.shape, generator=torch.Generator().manual_seed(1)).reshape(PROBE_ROWS, -1)


def _described(t: Tensor) -> str:
    return f"{str(t.dtype).removeprefix('torch.')} {tuple(t.shape)}"
