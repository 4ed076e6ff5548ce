"""Run directories: their layout (layout.py), atomic writes (files.py), checkpoints (checkpoint.py),
and the `Run` object that opens one (run.py; import it from there: it loads the config and torch)."""

from .files import (
    MetricsFile,
    check_writable,
    now,
    os_reason,
    read_json,
    read_metrics,
    run_folder,
    write_atomic,
    write_json,
    write_metrics,
    write_yaml,
)
from .layout import (
    CHECKPOINTS,
    CONFIG,
    EVALUATION,
    LABELS,
    METRICS,
    PLOTS,
    RUN_INFO,
    SCALER,
    SUMMARY,
    check_run_dir,
    environment,
    new_run_dir,
)

__all__ = ["CHECKPOINTS", "CONFIG", "EVALUATION", "LABELS", "METRICS", "MetricsFile", "PLOTS", "RUN_INFO", "SCALER", "SUMMARY",
           "check_run_dir", "check_writable", "environment", "new_run_dir", "now", "os_reason", "read_json", "read_metrics",
           "run_folder", "write_atomic", "write_json", "write_metrics", "write_yaml"]
