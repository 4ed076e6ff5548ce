"""User code: the function a custom loss names (`loss: {name: custom, function: "my_losses.py:fn"}`).

This is the one place where dlcli runs code that comes with a config: loading the config's loss
imports the file and runs whatever it does at import, calls the function once on a made-up batch
(nn/losses.py), then every step. A config with a custom loss is code: run it only if you would run
the file itself. Only a .py file is named, never a module: `os.path:join` would make any function
of any installed package the loss.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import SpecError

_module_ids = itertools.count()


def function_ref(ref: str) -> str:
    """A `function:` value checked for its form, "path/to/file.py:function", before anything is imported."""
    where, sep, attr = ref.rpartition(":")
    if not (sep and where.endswith(".py") and attr.isidentifier()):
        raise ValueError(f"must be 'path/to/file.py:function' (a Python file, relative to the config), got '{ref}'")
    return ref


def looks_like_ref(text: str) -> bool:
    """Whether a loss name is a function reference, "file.py:fn", rather than a misspelled name."""
    where, sep, attr = text.rpartition(":")
    return bool(sep) and where.endswith(".py")


# The names Keras, PyTorch and their users give a loss's two arguments.
TARGET_NAMES = {"y_true", "ytrue", "target", "targets", "y", "true", "label", "labels", "truth"}
PREDICTION_NAMES = {"y_pred", "ypred", "prediction", "predictions", "pred", "preds", "p", "y_hat", "yhat",
                    "output", "outputs", "input", "probs", "probabilities", "scores"}


def argument_order(fn: Callable[..., Any], ref: str) -> tuple[bool, str]:
    """Whether `fn` takes the target first (Keras' fn(y_true, y_pred)), from its first two argument names,
    and a note saying the order it will be called in. Names that say nothing (a, b), or say both, get the
    documented order fn(prediction, target) and a note asking for clearer ones."""
    try:
        params = [p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:2]
    except (TypeError, ValueError):  # a builtin without a signature
        params = []
    first, second = (params + ["?", "?"])[:2]
    target_first = first.lower() in TARGET_NAMES or second.lower() in PREDICTION_NAMES
    prediction_first = first.lower() in PREDICTION_NAMES or second.lower() in TARGET_NAMES
    if target_first != prediction_first:
        args = f"{first}=target, {second}=prediction" if target_first else f"{first}=prediction, {second}=target"
        return target_first, f"custom loss {ref} is called as {_name(fn)}({args}), by its argument names"
    return False, (f"custom loss {ref}: its argument names ({first}, {second}) do not say which is the prediction, "
                   f"so it is called as {_name(fn)}(prediction, target), the documented order; name them y_pred "
                   "and y_true (Keras') or prediction and target to say so")


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", "fn")


def load_function(ref: str, config_dir: Path) -> Callable[..., Any]:
    """The function `ref` names: "path/to/file.py:fn", the file relative to `config_dir`."""
    try:
        function_ref(ref)
    except ValueError as exc:
        raise SpecError(str(exc), key="function") from None
    where, _, attr = ref.rpartition(":")

    def fail(why: str) -> SpecError:
        return SpecError(f"cannot import '{ref}': {why}", key="function")

    try:
        module = _import_file(Path(config_dir) / Path(where).expanduser(), fail)
    except SyntaxError as exc:
        raise fail(f"syntax error in {Path(exc.filename or where).name}, line {exc.lineno}: {exc.msg}") \
            from exc
    except ModuleNotFoundError as exc:
        raise fail(f"no module named '{exc.name}' (is its folder on the Python path?)") from exc
    except SpecError:
        raise
    except Exception as exc:
        raise fail(f"importing it raised {type(exc).__name__}: {exc}") from exc

    fn = getattr(module, attr, None)
    if fn is None:
        defined = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
                   and getattr(v, "__module__", None) == module.__name__]
        raise fail(f"module has no function '{attr}'; it defines: {', '.join(defined) or 'no functions'}")
    if not callable(fn):
        raise fail(f"'{attr}' is a {type(fn).__name__}, not a function")
    return fn


def _import_file(path: Path, fail: Callable[[str], SpecError]) -> Any:
    if not path.is_file():  # (an absolute path replaced config_dir when joined)
        raise fail(f"file not found: {path}")
    # A unique name, so two configs' `losses.py` do not replace each other in sys.modules.
    name = f"_dlcli_custom_loss_{next(_module_ids)}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickle look a function's module up there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
