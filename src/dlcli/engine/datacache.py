"""Data loaded once per process for many trainings of one `data:` section: `with reuse_data(): ...`.

A tuning worker trains trial after trial on the same data when its search space touches no `data.` key;
reading and scaling it again for each trial would be time spent outside training. Outside `reuse_data`
(and for a resume, which brings its own fitted scaler and labels) every call loads afresh. The cache
holds one data set: the last one asked for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from ..data import Dataset, load_dataset

_cache: dict[str, Dataset] | None = None


@contextmanager
def reuse_data() -> Iterator[None]:
    global _cache
    previous, _cache = _cache, {}
    try:
        yield
    finally:
        _cache = previous


def cached_dataset(data, *, task: str, seed: int, scaler=None, classes=None, fill=None) -> Dataset:
    """`load_dataset`'s result, from the cache when `reuse_data` is on and the same section was loaded."""
    if _cache is None or scaler is not None or classes is not None or fill is not None:
        return load_dataset(data, task=task, seed=seed, scaler=scaler, classes=classes, fill=fill)
    key = json.dumps([data.model_dump(mode="json"), task, seed], sort_keys=True, default=str)
    if key not in _cache:
        _cache.clear()
        _cache[key] = load_dataset(data, task=task, seed=seed)
    return _cache[key]
