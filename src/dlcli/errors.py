"""Errors a user can fix. The CLI prints them in a line or two, without a traceback, and exits 2."""

from __future__ import annotations

from dataclasses import dataclass


class DlcliError(Exception):
    """Base of every error caused by input (config, data, command line) rather than by a bug."""

    exit_code = 2


@dataclass
class Problem:
    path: str  # key path in the config: "model.layers[2].units"; "" for the whole file
    message: str  # what is wrong and what would be right
    line: int | None = None  # 1-based line in the YAML file, when known


class ConfigError(DlcliError):
    """One or more problems in a config file (or its command-line overrides)."""

    def __init__(self, problems: list[Problem], file: str | None = None):
        self.problems = problems
        self.file = file
        super().__init__(self.render())

    def render(self) -> str:
        lines = []
        for p in self.problems:
            where = self.file or "config"
            if p.line is not None:
                where += f", line {p.line}"
            lines.append(f"{where}: {p.path}: {p.message}" if p.path else f"{where}: {p.message}")
        return "\n".join(lines)


class SpecError(DlcliError):
    """Raised by a builder (layer, loss, ...) whose parameters do not fit; `key` is relative to the spec."""

    def __init__(self, message: str, key: str = ""):
        self.key = key
        super().__init__(message)


class DataError(DlcliError):
    """Data that cannot be used: a missing file, an unknown column, NaNs, non-numeric values."""


class RunError(DlcliError):
    """A run directory that cannot be used: missing, not a dlcli run, nothing to resume."""


class TrainingFailed(Exception):
    """Training stopped because the loss became NaN or infinite; the run is marked failed. Exit 1."""

    exit_code = 1


class Stopped(KeyboardInterrupt):
    """Training stopped by Ctrl-C (SIGINT) or `kill` (SIGTERM, as SLURM sends it): exit 128 + the signal's
    number (130, 143), as a shell reports a process the signal ended. `run_dir` is the run it marked
    interrupted, or None when it came before the run folder existed."""

    def __init__(self, signum: int, run_dir=None):
        self.signum, self.run_dir = signum, run_dir
        self.exit_code = 128 + signum
        super().__init__(signum)
