"""Words for people: "did you mean", key paths, short lists, and pydantic's errors said plainly.

The config schema and every registry check values with pydantic; `translate` turns its errors into
(key path, message) pairs such as (("model", "layers", 2, "units"), "must be a positive integer,
got -3"), which the config then places at a file and line.
"""

from __future__ import annotations

import difflib
import errno
import os
import re
import stat
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

SHOW = 5  # items quoted in a message


def normalize(name: str) -> str:
    """The key two spellings of one name share: `MaxPooling2D` -> `maxpooling2d`."""
    return "".join(ch for ch in str(name).lower() if ch not in "_- ")


def suggest(word: str, candidates: list[str]) -> str | None:
    """The closest candidate to a misspelled word, or None when nothing is close."""
    by_key = {normalize(c): c for c in candidates}
    hit = difflib.get_close_matches(normalize(word), list(by_key), n=1, cutoff=0.6)
    return by_key[hit[0]] if hit else None


def did_you_mean(word: str, candidates: list[str]) -> str:
    hint = suggest(word, candidates)
    return f"; did you mean '{hint}'?" if hint else ""


def few(items, fmt=str, limit: int = SHOW) -> str:
    """The first few items of a list for a message: "3, 7, 9, ..."."""
    items = list(items)
    return ", ".join(fmt(i) for i in items[:limit]) + (", ..." if len(items) > limit else "")


def article(word: str) -> str:
    """"a loss", "an optimizer"."""
    return ("an " if word[0] in "aeiou" else "a ") + word


def special_file(path) -> str | None:
    """What a path is when it is neither a regular file, a folder nor missing ("a named pipe (FIFO)",
    "a device", "a socket", "a symlink loop"), else None.

    Asked before a file is opened: reading a FIFO waits for a writer, /dev/zero never ends, and a
    symlink loop otherwise looks like a missing file.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return "a symlink loop" if exc.errno == errno.ELOOP else None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "not a regular file"


SHORT_NAMES = {"train_loss": "loss", "accuracy": "acc", "precision": "prec", "recall": "rec",
               "epoch_seconds": "secs"}


def short_name(column: str) -> str:
    """A metric column as a narrow terminal shows it, Keras' way: train_loss -> loss, train_accuracy -> acc,
    val_precision -> val_prec. metrics.csv and the JSON outputs keep the full names."""
    if column in SHORT_NAMES:
        return SHORT_NAMES[column]
    prefix, _, name = column.partition("_")
    if prefix == "train" and name:
        return SHORT_NAMES.get(name, name)
    if prefix == "val" and name:
        return f"val_{SHORT_NAMES.get(name, name)}"
    return SHORT_NAMES.get(column, column)


def relative_paths(text: str, cwd: str | None = None) -> str:
    """`text` with every absolute path under the current directory written relative to it.

    Paths reach messages resolved (data files are found relative to the config's folder, a config's
    file is resolved) or as typed; the CLI passes every line it prints through this, so a file is named
    the same way in every message, whichever code wrote it. Paths elsewhere stay absolute."""
    cwd = os.getcwd() if cwd is None else cwd
    if cwd.rstrip(os.sep) == "":  # at / every path is under the current directory: leave them whole
        return text
    prefix = re.escape(cwd.rstrip(os.sep) + os.sep)
    return re.sub(rf"(?<![\w.~{re.escape(os.sep)}-]){prefix}(?=[^\s{re.escape(os.sep)}])", "", text)


def key_path(path) -> str:
    """("model", "layers", 2, "units") -> "model.layers[2].units"."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def translate(exc: ValidationError, raw: Any, model: type[BaseModel]) -> list[tuple[tuple, str]]:
    """Pydantic's errors -> (key path, message for people); one message per path."""
    by_path: dict[tuple, list[str]] = {}
    for err in exc.errors(include_url=False):
        path = _real_path(err["loc"], raw)
        if err["type"] == "extra_forbidden":
            msg = _unknown_key(model, path)
        else:
            msg = _message(err, _integer_at(model, path))
        by_path.setdefault(path, [])
        if msg not in by_path[path]:
            by_path[path].append(msg)
    out = []
    for path, msgs in by_path.items():
        if len(msgs) > 1 and all(m.startswith("must be ") for m in msgs):
            got = msgs[0].rsplit(", got ", 1)[-1] if ", got " in msgs[0] else None
            parts = [m[len("must be ") :].rsplit(", got ", 1)[0] for m in msgs]
            msg = "must be " + " or ".join(parts) + (f", got {got}" if got else "")
        else:
            msg = "; ".join(msgs)
        out.append((path, msg))
    return out


def _unknown_key(model: type[BaseModel], path: tuple) -> str:
    """"unknown key" with the way to say it here: a model's `hints` (another tool's key, such as Keras'
    `validation_split`, and where dlcli has it), else "did you mean" and the keys allowed there."""
    key, parent = path[-1], model_at(model, path[:-1])
    hint = getattr(parent, "hints", {}).get(key) if parent is not None else None
    if hint:
        return f"unknown key '{key}': {hint}"
    same = spellings(parent, key) if parent is not None else ()
    if len(same) > 1:
        return f"{' and '.join(repr(s) for s in same)} are one key, given twice here; give one of them"
    fields = list(parent.model_fields) if parent is not None else []
    msg = f"unknown key '{key}'{did_you_mean(str(key), fields)}"
    return msg + (f" (allowed keys: {', '.join(fields)})" if fields else "")


def spellings(model: type[BaseModel], key: str) -> tuple[str, ...]:
    """Every spelling of the field `key` names in `model` (its name, then its aliases: lr, learning_rate);
    () when it names none."""
    for name, field in model.model_fields.items():
        given = getattr(field.validation_alias, "choices", None) or [field.validation_alias, field.alias]
        aliases = tuple(dict.fromkeys(a for a in given if isinstance(a, str) and a != name))
        if key == name or key in aliases:
            return (name, *aliases)
    return ()


def _real_path(loc: tuple, raw: Any) -> tuple:
    """Drop pydantic's union-member tags from a location, keeping keys that exist in the input."""
    path: list = []
    node = raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not _looks_like_tag(part):
            path.append(part)  # a missing key, or an alias
            node = None
    return tuple(path)


def _looks_like_tag(part: str) -> bool:
    return any(ch in part for ch in "[]()-") or part in ("str", "int", "float", "bool", "list", "dict", "none")


def _model_in(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found:
            return found
    return None


def _integer_at(model: type[BaseModel], path: tuple) -> bool:
    """Whether the schema wants an integer at a path (so "positive integer" and not "positive number")."""
    names = [part for part in path if isinstance(part, str)]
    if not names:
        return False
    parent = model_at(model, tuple(names[:-1]))
    if parent is None:
        return False
    for name, field in parent.model_fields.items():  # the key as written may be an alias (strides, learning_rate)
        if names[-1] == name or names[-1] in (getattr(field.validation_alias, "choices", None) or ()):
            return _is_int(field.annotation)
    return False


def model_at(model: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The model of the mapping at a key path (list indices skipped), or None where there is none."""
    for part in path:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field is not None else None
        if model is None:
            return None
    return model


def _is_int(annotation) -> bool:
    """int, or a union or Annotated type with int among its members."""
    return annotation is int or any(_is_int(arg) for arg in get_args(annotation))


def _message(err: dict, integer: bool = False) -> str:
    kind, ctx, value = err["type"], err.get("ctx", {}), err.get("input")
    got = f", got {value!r}" if not isinstance(value, dict) else ""
    if kind == "missing":
        return "required key is missing"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be an integer{got}"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number{got}"
    if kind == "finite_number":
        return f"must be a finite number{got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false{got}"
    if kind in ("string_type",):
        return f"must be a string{got}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list{got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping of keys{got}"
    if kind == "greater_than" and ctx.get("gt") == 0:
        return f"must be a positive {'integer' if integer else 'number'}{got}"
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']}{got}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}{got}"
    if kind == "less_than":
        return f"must be below {ctx['lt']}{got}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}{got}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'", ctx.get("expected", ""))
        hint = did_you_mean(str(value), expected) if isinstance(value, str) else ""
        return f"must be one of {', '.join(expected)}{got}{hint}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return f"{err['msg'][0].lower()}{err['msg'][1:]}{got}"
