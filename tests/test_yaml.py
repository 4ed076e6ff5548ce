"""Reading a config's YAML: what is refused before anything is built, and what still works.

A config that is not a regular file is refused unread; duplicate keys, keys that are not names,
recursive aliases, alias bombs and deep nesting are one clear ConfigError with the line, found
before pyyaml builds the value (an alias bomb is a few lines that stand for billions of values).
"""

import os
import sys
import time
import tracemalloc

import pytest
import torch

from dlcli.config import load_config
from dlcli.config.lines import MAX_BYTES
from dlcli.errors import ConfigError, RunError
from dlcli.runs.checkpoint import load_checkpoint

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
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs, /dev/zero and symlink loops")
# Nine levels of nine aliases each: 9**9 values from 1.3 KB (the 6 GB `validate`).
BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))


def write(tmp_path, text: str | bytes, name="c.yaml"):
    path = tmp_path / name
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def refused(path, *overrides) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return str(info.value)


def special_files(tmp_path) -> dict:
    """A FIFO, /dev/zero behind a link, and a symlink loop: reading any of them would hang or fail late."""
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    return {"fifo.yaml": "a named pipe (FIFO)", "zero.yaml": "a device", "loop.yaml": "a symlink loop"}


@posix_only
@pytest.mark.timeout(10)
def test_a_config_that_is_no_regular_file_is_refused_unread(tmp_path):
    for name, kind in special_files(tmp_path).items():
        assert refused(tmp_path / name) == f"{tmp_path / name}: is {kind}, not a config file; it was not read"


@posix_only
@pytest.mark.timeout(10)
def test_a_checkpoint_that_is_no_regular_file_is_refused_unread(tmp_path):
    for name, kind in special_files(tmp_path).items():
        with pytest.raises(RunError) as info:
            load_checkpoint(tmp_path / name, torch.device("cpu"))
        assert str(info.value) == f"{tmp_path / name}: is {kind}, not a checkpoint file; it was not read"


def test_a_config_over_the_size_cap_is_refused(tmp_path):
    path = write(tmp_path, BASE + "#" * MAX_BYTES + "\n")
    assert f"is larger than {MAX_BYTES >> 10} KiB, the most a config file may be" in refused(path)


def test_a_key_given_twice_names_both_lines(tmp_path):
    msg = refused(write(tmp_path, BASE + "name: u\n"))
    assert msg == f"{tmp_path / 'c.yaml'}, line 9: name: is given twice, on lines 1 and 9; keep one"
    msg = refused(write(tmp_path, BASE.replace("units: 8,", "units: 8, units: 4,")))
    assert "line 6: model.layers[0].units: is given twice, on line 6; keep one" in msg


@pytest.mark.parametrize("key,shown", [("1", "1 (a number)"), ("null", "null (an empty key)"),
                                       ("true", "true (true or false)"), ("[1, 2]", "a list"),
                                       ("{a: 1}", "a mapping"), ("2.5", "2.5 (a number)")])
def test_keys_must_be_names(tmp_path, key, shown):
    msg = refused(write(tmp_path, BASE.replace("units: 8,", f"units: 8, ? {key} : 3,")))
    assert f"line 6: model.layers[0]: keys must be names such as units, got {shown}" in msg
    msg = refused(write(tmp_path, BASE), f"model.layers[0]={{type: dense, units: 3, {key}: 3}}")
    assert f"model.layers[0]: override 'model.layers[0]={{type: dense, units: 3, {key}: 3}}': keys must be " \
           f"names such as units, got {shown}" in msg


@pytest.mark.parametrize("text,line", [
    ("extra: &x [1, *x]\n", 9),
    ("extra: &x {a: 1, b: *x}\n", 9),
    ("extra: &x\n  a: {<<: *x}\n", 10),
])
def test_a_value_that_contains_itself_is_refused(tmp_path, text, line):
    msg = refused(write(tmp_path, BASE + text))
    assert f"line {line}: alias *x is inside the value &x it names; a config cannot contain itself" in msg
    assert "alias *a is inside the value &a" in refused(write(tmp_path, BASE), "loss=&a [*a]")


@pytest.mark.timeout(10)
def test_an_alias_bomb_is_refused_before_it_is_built(tmp_path):
    path = write(tmp_path, BASE + BOMB)
    assert len(BOMB) < 1400
    tracemalloc.start()
    start = time.perf_counter()
    msg = refused(path)
    seconds, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "line 13: the aliases up to *a3 stand for more than 10,000 values" in msg
    assert seconds < 1 and peak < 20e6, (seconds, peak)


def test_nesting_is_capped_also_through_aliases(tmp_path):
    deep = "[" * 60 + "]" * 60
    assert "line 9: nested more than 50 levels deep" in refused(write(tmp_path, BASE + f"extra: {deep}\n"))
    chain = "a0: &a0 " + "[" * 30 + "]" * 30 + "\na1: &a1 " + "[" * 25 + "*a0" + "]" * 25 + "\n"
    assert "line 10: nested more than 50 levels deep (through alias *a0)" in refused(write(tmp_path, BASE + chain))


def test_anchors_aliases_and_merge_keys_still_work(tmp_path):
    hidden = "    - {type: dense, units: 8, activation: relu}\n"
    written_out = BASE.replace(hidden, hidden + "    - {type: dense, units: 4, activation: relu}\n" + hidden)
    aliased = BASE.replace(hidden, "    - &hidden {type: dense, units: 8, activation: relu}\n"
                                   "    - {<<: *hidden, units: 4}\n    - *hidden\n")
    expected = load_config(write(tmp_path, written_out, "w.yaml")).resolved()
    assert load_config(write(tmp_path, aliased)).resolved() == expected
    assert [layer["units"] for layer in expected["model"]["layers"]] == [8, 4, 8, 3]


def test_a_config_that_is_not_utf8_names_the_byte(tmp_path):
    msg = refused(write(tmp_path, BASE.encode() + b"extra: \xff\n"))
    assert f"is not UTF-8 text (byte {len(BASE) + 7} cannot be read)" in msg


def test_a_tab_on_the_malformed_line_is_named(tmp_path):
    msg = refused(write(tmp_path, BASE.replace("  dataset: iris", "\tdataset: iris")))
    assert msg == (f"{tmp_path / 'c.yaml'}, line 3: malformed YAML: found character '\\t' that cannot start any "
                   "token; indent with spaces, not tabs")
