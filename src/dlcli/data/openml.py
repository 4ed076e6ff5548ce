"""`data: {openml: ID}`: an OpenML table, downloaded once into `data.root`/openml and read from there.

scikit-learn's `fetch_openml` does the work: it keeps the API answers and the data file, gzipped,
under `<root>/openml/openml.org/...` and reads them from there on every later call. dlcli adds one
rule on top: with `download: false` (the default) it never opens a connection. A missing cache is
then an error that says which folder to fill and how, so a config behaves the same on a laptop and
on a cluster node without internet.
"""

from __future__ import annotations

import socket
import warnings
from contextlib import contextmanager
from pathlib import Path
from urllib.error import URLError

import pandas as pd

from ..config import DataConfig
from ..errors import SpecError
from ..messages import did_you_mean
from .tables import Origin, Rows, frame_rows

CACHE = "openml"  # fetch_openml keeps its files in <data_home>/openml
_TIMEOUT_S = 60  # per socket operation: a stalled connection fails instead of hanging
# sklearn retries a failed request once (its minimum) after this pause; its very first request
# (the description) ignores these and retries 3 times, 1 s apart: offline, a failure takes ~3 s.
_RETRY_DELAY_S = 0.5


class _NotCached(Exception):
    """Raised in place of a download when `download: false`: the url that was not in the cache."""

    def __init__(self, url: str):
        self.url = url
        super().__init__(url)


def load_openml(data: DataConfig, task: str) -> Rows:
    """The rows of the OpenML data set `data.openml` (an id, or a name for its active version).

    The target is `data.target`, else the data set's default target, which is then written into
    `data.target` like any default filled in: the run's resolved config names it, so `evaluate --data`
    and `predict` find that column in other files. `features`, `drop`, `missing` and `positive` act
    as for any table, through the same code as csv files.
    """
    frame, name, default_target = _fetch(data)
    if data.target is None:
        data.target = _single_target(default_target, frame, data)
    return frame_rows(frame, Origin(f"OpenML data set {data.openml} ({name})", "openml", data, main=True), task)


def cache_folder(data: DataConfig) -> Path:
    return Path(data.root).expanduser() / CACHE


def _fetch(data: DataConfig) -> tuple[pd.DataFrame, str, str | None]:
    """(every column as a frame, the data set's name, its default target) from the cache or OpenML."""
    from sklearn.datasets import fetch_openml
    from sklearn.datasets._openml import OpenMLError

    cache = cache_folder(data)
    which = _identify(data.openml)
    if not data.download and not cache.is_dir():
        raise SpecError(_not_cached(data, cache), "openml")
    try:
        # warnings: sklearn's "retrying" and "invalid cache" notes; the outcome is reported below.
        with warnings.catch_warnings(), _network(allowed=data.download):
            warnings.simplefilter("ignore")
            # target_column=None: every usable column comes back, and dlcli picks and checks the
            # target itself, with the same messages as for a csv file.
            bunch = fetch_openml(**which, data_home=str(Path(data.root).expanduser()), as_frame=True,
                                 parser="pandas", target_column=None, n_retries=1, delay=_RETRY_DELAY_S)
    except _NotCached as exc:
        raise SpecError(_not_cached(data, cache, f"not cached: {exc.url}"), "openml") from None
    except OpenMLError as exc:  # OpenML answered: no such data set
        raise SpecError(f"OpenML has no data set {data.openml!r} ({exc}); check the id on "
                        "https://www.openml.org/search?type=data", "openml") from None
    except (URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SpecError(_not_cached(data, cache, f"the download failed: {reason}"), "openml") from None
    except (ValueError, KeyError, OSError, EOFError) as exc:  # sparse data, a bad checksum, a broken cache file
        raise SpecError(f"cannot load OpenML data set {data.openml} from {cache}: {exc}", "openml") from None
    frame = bunch.frame
    frame.columns = [str(c) for c in frame.columns]
    details = bunch.get("details") or {}
    return frame, str(details.get("name", data.openml)), details.get("default_target_attribute")


def _identify(openml: int | str) -> dict:
    """An id (42 or "42") -> data_id; any other text -> the name of a data set's active version."""
    if isinstance(openml, int) or str(openml).strip().isdigit():
        return {"data_id": int(openml)}
    return {"name": str(openml)}


def _single_target(default: str | None, frame: pd.DataFrame, data: DataConfig) -> str:
    columns = list(frame.columns)
    if not default:
        raise SpecError(f"OpenML data set {data.openml} names no default target; set data.target to one of its "
                        f"columns{_columns(columns)}", "target")
    names = [t.strip() for t in str(default).split(",") if t.strip()]
    if len(names) > 1:
        raise SpecError(f"OpenML data set {data.openml} has several targets ({', '.join(names)}); set data.target "
                        "to the one to predict", "target")
    if names[0] not in columns:  # OpenML marked it to be ignored; say so instead of a bare "no column"
        raise SpecError(f"OpenML data set {data.openml}'s default target '{names[0]}' is not among its usable columns"
                        f"{did_you_mean(names[0], columns)}; set data.target{_columns(columns)}", "target")
    return names[0]


def _columns(columns: list[str]) -> str:
    return f" ({', '.join(columns)})" if len(columns) <= 12 else f" (it has {len(columns)} columns)"


def _not_cached(data: DataConfig, cache: Path, failure: str = "") -> str:
    why = f"; {failure}" if failure else ""
    setting = "download: true" if data.download else "download: false, so nothing is downloaded"
    return (f"OpenML data set {data.openml} is not in the cache folder {cache} ({setting}){why}. "
            "Fill the folder once on a machine with internet: run `dlcli validate <this config> "
            "data.download=true` there (it downloads into data.root/openml), then copy that openml folder "
            f"to {cache}")


@contextmanager
def _network(*, allowed: bool):
    """Downloads allowed: with a socket timeout, so a silent network fails instead of hanging.
    Not allowed: every request sklearn would send raises _NotCached instead, so a missing cache
    file is reported without ever opening a connection."""
    from sklearn.datasets import _openml

    if allowed:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(_TIMEOUT_S)
        try:
            yield
        finally:
            socket.setdefaulttimeout(previous)
        return

    def refuse(request, *args, **kwargs):
        raise _NotCached(getattr(request, "full_url", str(request)))

    original = _openml.urlopen
    _openml.urlopen = refuse
    try:
        yield
    finally:
        _openml.urlopen = original
