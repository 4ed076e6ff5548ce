"""`dlcli train CONFIG --nproc N`: N training processes on this machine, started by PyTorch's own launcher.

This is `torchrun --standalone --nproc-per-node N -m dlcli train CONFIG ...` run in this process:
torch.distributed.run picks a free port (so runs started side by side never collide), starts the
ranks, and stops them all when one fails or this process is signalled. The config is checked here
first, so a mistake is one error, not one per rank.
"""

from __future__ import annotations

import os

from ..errors import RunError, TrainingFailed


def worker_args(argv: list[str]) -> list[str]:
    """`dlcli train`'s arguments without --nproc N (and with the command itself), for each rank."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        out.append(arg)
    return out


def check(config: str | None, overrides: list[str], resume, nproc: int, device: str | None) -> None:
    """The config (or the resumed run's) as every rank will load it, its batch and distributed: options
    against N processes on its device."""
    from ..config import load_config
    from ..engine import distributed
    from ..engine.device import config_device
    from ..runs.run import Run

    cfg = Run.open(resume, overrides).config if resume is not None else load_config(config, overrides)
    distributed.check(cfg, nproc, config_device(cfg, device))


def launch(nproc: int, argv: list[str]) -> int:
    """Run `dlcli train` with `argv` in `nproc` processes; their exit code (0 when all completed)."""
    import torch.distributed.run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    os.environ.setdefault("LOGLEVEL", "ERROR")  # torch.distributed.elastic's loggers: dlcli says what failed
    args = torchrun.parse_args(["--standalone", f"--nproc-per-node={nproc}", "--monitor-interval=0.5",
                                "-m", "dlcli", *argv])
    _quiet_agent()
    try:
        torchrun.run(args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode
        if code < 0:  # killed by a signal
            import signal

            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            raise TrainingFailed(f"rank {rank} of {nproc} was killed by {name}, and the others were stopped "
                                 "with it") from None
        return code if code in (1, 2) or code >= 128 else 1
    except SignalException as exc:
        return 128 + int(exc.sigval)
    except RuntimeError as exc:
        raise RunError(f"--nproc {nproc}: the processes could not be started ({exc})") from None
    return 0


def _quiet_agent() -> None:
    """torch.distributed.elastic logs its workers' failures with a traceback-like report; dlcli says it in one
    line, and rank 0 has already said what happened."""
    import logging

    for name in ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
