"""The config schema: every key of a config, its type, default and range.

The parameters of a layer, activation, loss, optimizer, schedule, metric or augmentation are not
here: they are the signature of its registered builder (see registry.py), checked by checks.py.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, Strict, field_validator, model_validator

from ..errors import ConfigError, SpecError
from ..registry import implied_task, lookup
from .lines import locate
from .overrides import parse_key_path
from .space import TuneConfig

PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
# numpy's and scikit-learn's seeds are 32-bit; strict, so `true` or 1.5 is not taken for a number.
Seed = Annotated[int, Strict(), Field(ge=0, le=2**32 - 1)]
NAME_BYTES = 200  # a run name is one folder name; most file systems allow 255 bytes

BUILTIN_DATASETS = ("breast_cancer", "digits", "iris", "wine", "diabetes")
Task = Literal["auto", "binary", "multiclass", "regression"]


class Section(BaseModel):
    # No key takes an infinite number: `.inf` and `.nan` are refused where they are written.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)
    hints: ClassVar[dict[str, str]] = {}  # a key Keras users write here -> where dlcli has it (messages.translate)


CLASS_WEIGHT_HINT = ("class weights go under train, as Keras' class_weight: train: {class_weight: {0: 1.0, 1: 5.0}} "
                     "(or balanced); they multiply the event weights (data.weight); or weigh classes in the "
                     "loss: {name: class_balanced, weights: [w_0, w_1, ...]} (one per class, in class order), "
                     "or weights: inverse_frequency")
VALIDATION_SPLIT_HINT = "Keras' validation_split is data.split.val here: data: {..., split: {val: 0.1}}"


class SplitConfig(Section):
    val: Fraction = 0.0
    test: Fraction = 0.0

    @model_validator(mode="after")
    def _leaves_training_rows(self):
        if self.val + self.test >= 1:
            raise ValueError(f"val + test must be below 1 to leave training rows, got {self.val + self.test:g}")
        return self


SOURCES = ("path", "train", "dataset", "openml", "torchvision", "images")  # exactly one per config


class DataConfig(Section):
    # Where the rows come from: exactly one of these (val/test files go with train).
    path: str | None = None  # one table file: csv, tsv, parquet, npy, npz, HDF5 (.h5/.hdf5), ROOT
    train: str | None = None
    val: str | None = None
    test: str | None = None
    dataset: Literal[BUILTIN_DATASETS] | None = None  # type: ignore[valid-type]
    openml: int | str | None = None  # an OpenML data id (the lecture's HIGGS is 23512), cached under root
    torchvision: str | None = None  # a torchvision data set class: FashionMNIST, MNIST, CIFAR10, ...
    images: str | None = None  # a folder with one subfolder of images per class (torchvision ImageFolder)

    # Tables
    target: str | None = None
    features: list[str] | None = None
    drop: list[str] | None = None
    key: str | None = None  # HDF5: the group or data set holding the table
    tree: str | None = None  # ROOT: the TTree to read
    branches: list[str] | None = None  # ROOT: the branches to use as features (like features)
    missing: Literal["error", "drop", "mean"] = "error"  # NaN in features: refuse, drop the rows, or fill
    weight: str | None = None  # the event-weight column (HDF5 field, npz array, ROOT branch); not a feature
    negative_weights: Literal["keep", "zero", "abs"] = "keep"  # NLO generators' negative weights are physics
    class_names: list[str] | dict[str | int, str] | None = None  # [background, signal], or {label: name}

    # Images
    root: str = "data"  # where torchvision and OpenML files are kept (relative to the config's folder)
    download: bool = False  # let torchvision / OpenML fetch missing files
    image_size: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] | None = None  # [H, W]
    color: Literal["grayscale", "rgb"] | None = None
    augment: list[Any] | None = None  # transforms for the train split only: [{name: random_crop, ...}]

    # Every source
    split: SplitConfig = SplitConfig()
    scale: Literal["none", "standard", "minmax"] = "none"
    positive: list[str | int | float] | None = None  # these labels -> class 1, the rest -> class 0
    stream: Literal["auto"] | bool = "auto"  # read batches through DataLoader workers instead of all at once
    workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"  # DataLoader worker processes

    @model_validator(mode="after")
    def _one_source(self):
        sources = [k for k in SOURCES if getattr(self, k) is not None]
        if len(sources) != 1:
            got = f"got {' and '.join(sources)}" if sources else "got none"
            raise ValueError("give exactly one of path, train (with optional val, test files), dataset, openml, "
                             f"torchvision or images; {got}")
        if (self.val or self.test) and not self.train:
            raise ValueError("val and test files go with a train file: set data.train")
        if self.path or self.train:
            if not self.target:
                raise ValueError("data.target is required with a data file: the column (csv) or key (npz) to predict")
        if self.features is not None and self.drop is not None:
            raise ValueError("give features or drop, not both")
        if self.branches is not None and (self.features is not None or self.drop is not None):
            raise ValueError("branches are a ROOT file's features: give branches, features or drop, not two of them")
        if self.weight is not None:
            if not (self.path or self.train):
                raise ValueError("weight names the event-weight column of a table file; it needs data.path or "
                                 "data.train")
            if self.weight == self.target:
                raise ValueError(f"'{self.weight}' is the target; data.weight must be another column")
            if self.weight in (self.features or self.branches or []):
                raise ValueError(f"'{self.weight}' is the event weight; it cannot also be a feature")
        format_keys = [k for k in ("key", "tree", "branches") if getattr(self, k) is not None]
        if format_keys and not (self.path or self.train):
            raise ValueError(f"{format_keys[0]} describes what to read from a data file; it needs data.path or "
                             "data.train")
        return self


class ModelConfig(Section):
    input_shape: list[PositiveInt] | None = None
    layers: Annotated[list[Any], Field(min_length=1)]


class EarlyStopping(Section):
    monitor: str = "val_loss"
    mode: Literal["auto", "min", "max"] = "auto"
    patience: Annotated[int, Field(ge=0)] = 5
    min_delta: Annotated[float, Field(ge=0)] = 0.0


class TrainConfig(Section):
    hints: ClassVar[dict[str, str]] = {"validation_split": VALIDATION_SPLIT_HINT, "sample_weight": (
        "event weights are a column of the data here: data: {..., weight: COLUMN}")}

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    device: str = "auto"
    shuffle: bool = True
    early_stopping: EarlyStopping | None = None
    clip_grad_norm: Annotated[float, Field(gt=0)] | None = Field(None, alias="clipnorm")
    clip_grad_value: Annotated[float, Field(gt=0)] | None = Field(None, alias="clipvalue")
    eval_batch_size: PositiveInt | Literal["auto"] = "auto"  # auto: 4096; 128 for convolutional nets on a CPU
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # bf16/fp16: autocast; fp16 adds a gradient scaler
    compile: bool = False  # torch.compile the model (falls back to eager with a warning where it cannot)
    channels_last: Literal["auto"] | bool = "auto"  # auto: on for convolutional models
    tensorboard: bool = False  # also write scalars to RUN_DIR/tb; the older spelling of tracking: [{type: tensorboard}]
    threads: Literal["auto"] | PositiveInt = "auto"  # CPU threads; auto: timed on the first steps (engine/threads.py)
    train_metrics: bool = True  # log train_<metric> per epoch, from the predictions made while training
    # Keras' class_weight: {class id or label: factor}, or balanced (N / (C N_c)); multiplies the event weights
    class_weight: dict[int | str, Annotated[float, Field(ge=0)]] | Literal["balanced"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _early_stopping_true(cls, values):
        # `early_stopping: true` means the defaults; `false` means off.
        if isinstance(values, dict) and isinstance(values.get("early_stopping"), bool):
            values = {**values, "early_stopping": {} if values["early_stopping"] else None}
        return values

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        # Its form; whether this machine has it is engine/device.py's to say (at validate too).
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", device):
            gpu = "; a GPU is cuda here (cuda:N for the N-th one), and auto uses one when present" \
                if device.lower() == "gpu" else ""
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got '{device}'{gpu}")
        return device


class DistributedConfig(Section):
    """Data-parallel training under torchrun, srun or `dlcli train --nproc N` (engine/distributed.py)."""

    backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: nccl on CUDA, gloo on CPU
    timeout: Annotated[float, Field(gt=0)] = 600  # seconds a rank waits for the others before it gives up
    sync_batchnorm: bool = False  # batch norm statistics over the global batch (GPUs only)


class TrackerConfig(Section):
    """One entry of `tracking:`: where a run's params, metrics and files also go (metrics.csv stays the record)."""

    type: Literal["mlflow", "tensorboard"]
    uri: str | None = None  # mlflow: the tracking URI; default sqlite:///runs/mlflow.db (relative to the cwd)
    experiment: str | None = None  # mlflow: the experiment; default the run's name
    run_name: str | None = None  # mlflow: the run's name; default <name>/<run folder>
    tags: dict[str, str] | None = None  # mlflow: extra tags on the run

    @model_validator(mode="after")
    def _mlflow_keys(self):
        if self.type == "tensorboard" and any(v is not None for v in (self.uri, self.experiment, self.run_name,
                                                                       self.tags)):
            raise ValueError("uri, experiment, run_name and tags are mlflow's; tensorboard writes to RUN_DIR/tb")
        return self


def _name_problem(name: str) -> str | None:
    if not name.strip():
        return "is empty"
    if "\0" in name:
        return "holds a NUL character"
    if "/" in name or "\\" in name or name in (".", ".."):
        return "is a path, not one folder name"
    if len(name.encode()) > NAME_BYTES:
        return f"is {len(name.encode())} bytes long, over {NAME_BYTES}"
    return None


class Config(Section):
    hints: ClassVar[dict[str, str]] = {
        "validation_split": VALIDATION_SPLIT_HINT,
        "epochs": "it goes under train: train.epochs (train: {epochs: 10})",
        "batch_size": "it goes under train: train.batch_size (train: {batch_size: 32})",
        "class_weight": CLASS_WEIGHT_HINT,
        "learning_rate": "it goes with the optimizer: optimizer: {name: adam, lr: 0.001}",
        "lr": "it goes with the optimizer: optimizer: {name: adam, lr: 0.001}",
    }

    name: str | None = None  # the run's folder under runs/: one path component (--run-dir takes a path)
    seed: Seed = 42
    task: Task = "auto"
    data: DataConfig | None = None
    model: ModelConfig
    loss: Any
    optimizer: Any = {"name": "adam", "lr": 0.001}
    schedule: Any = None
    train: TrainConfig = TrainConfig()
    metrics: list[str | dict[str, Any]] | None = None  # names, `rejection@eff=0.5`, or {name: ams, b_reg: 10}
    tune: TuneConfig | None = None  # dlcli tune's study and search space (config/space.py); training ignores it
    distributed: DistributedConfig = DistributedConfig()
    tracking: list[TrackerConfig] | None = None  # [{type: mlflow, uri: ..., experiment: ...}, {type: tensorboard}]

    @field_validator("name")
    @classmethod
    def _one_folder(cls, name: str | None) -> str | None:
        """runs/<name>/ must stay under runs/: `../x` or `/tmp/x` would put a run elsewhere."""
        why = None if name is None else _name_problem(name)
        if why:
            shown = name if len(name) <= 40 else name[:40] + "..."
            raise ValueError(f"{why}: a run name is one folder name under runs/ (no '/', '..' or NUL, at most "
                             f"{NAME_BYTES} bytes), got {shown!r}; to put a run at a path of your own use "
                             "dlcli train --run-dir PATH")
        return name

    @field_validator("loss", "optimizer")
    @classmethod
    def _not_empty(cls, spec: Any, info) -> Any:
        """`optimizer=` on the command line (or `loss:` with nothing after it) is no spec at all."""
        if spec is None:
            example = "adam or {name: adam, lr: 0.001}" if info.field_name == "optimizer" else "mse"
            raise ValueError(f"is empty; give a name or {{name: ..., <params>}}, e.g. {example}")
        return spec

    _file: Path | None = PrivateAttr(None)
    _lines: dict = PrivateAttr(default_factory=dict)

    def came_from(self, file: Path, lines: dict) -> None:
        """Remember the YAML file and the line of each key path: for messages, and for relative paths."""
        self._file, self._lines = file.resolve(), lines

    @property
    def file(self) -> Path | None:
        """The YAML file this config came from (None when built from a dict)."""
        return self._file

    @property
    def base_dir(self) -> Path:
        """Relative data and custom-loss paths are relative to the config file's folder."""
        return self._file.parent if self._file else Path.cwd()

    def resolved(self) -> dict:
        """The config as used, defaults filled in, paths absolute: what a run directory stores."""
        return self.model_dump(mode="json", by_alias=False, exclude={"tune"} if self.tune is None else None)

    def error(self, path: str, message: str) -> ConfigError:
        """A ConfigError at a key path (`model.layers[2].units`), with its line in the file."""
        problem = locate(tuple(parse_key_path(path)), message, self._lines, {})
        problem.path = path
        return ConfigError([problem], str(self._file) if self._file else None)

    @contextmanager
    def section(self, prefix: str):
        """A builder's SpecError (its key relative to the section) as a ConfigError at `prefix.<key>`."""
        try:
            yield
        except SpecError as exc:
            path = prefix + ("" if not exc.key else ("" if exc.key.startswith("[") else ".") + exc.key)
            raise self.error(path, str(exc)) from None

    # Derived facts the builders need, computed from the checked config.
    @property
    def output_activation(self) -> str:
        last = self.model.layers[-1]
        return last.get("activation") or "linear"

    @property
    def task_kind(self) -> str:
        """binary | multiclass | regression, from `task:`, else the loss, else the output activation."""
        if self.task != "auto":
            return self.task
        implied = implied_task(lookup("loss").tasks(self.loss))
        if implied in ("binary", "multiclass", "regression"):
            return implied
        act = self.output_activation
        act = act["name"] if isinstance(act, dict) else str(act)
        if act == "sigmoid":
            return "binary"
        if act == "softmax":
            return "multiclass"
        return "binary" if implied == "classification" else "regression"

    @property
    def metric_names(self) -> list[str]:
        if self.metrics is not None:
            return self.metrics
        return ["mae", "r2"] if self.task_kind == "regression" else ["accuracy"]

    @property
    def monitor(self) -> str:
        return self.train.early_stopping.monitor if self.train.early_stopping else "val_loss"


CLASS_KEYED = {("train", "class_weight"), ("data", "class_names")}  # mappings whose keys may be class ids


def knows(path: tuple) -> bool:
    """Whether the schema has the key path `path`, or it lies inside a value of free form (a layer's
    parameters, a loss spec): what the YAML reader asks before it judges the keys under it."""
    if tuple(path) in CLASS_KEYED:  # keys are class ids (Keras' {0: 1.0, 1: 5.0}): the schema checks them
        return False
    section: Any = Config
    for part in path:
        if not (isinstance(section, type) and issubclass(section, BaseModel)):
            return True
        fields = {**section.model_fields, **{f.alias: f for f in section.model_fields.values() if f.alias}}
        if part not in fields:
            return False
        annotation = fields[part].annotation
        section = next((t for t in (annotation, *get_args(annotation)) if isinstance(t, type)
                        and issubclass(t, BaseModel)), None)
    return True

