"""Where a data-parallel FFNN step's time goes on this machine: bare torch.distributed, no dlcli.

    flock /tmp/cpu.lock uv run python -m torch.distributed.run --standalone --nproc-per-node 2 \
        benchmarks/ddp_probe.py [--steps 268] [--rounds 3]
    flock /tmp/cpu.lock uv run python benchmarks/ddp_probe.py --single      # the 1-process baseline

The lecture's FFNN (28-300-150-100-50-1, SGD, BCE) on random numbers, global batch 256 (128 a rank),
1 compute thread a process. Each case runs `--steps` optimizer steps (268: one epoch of 68,635 rows)
`--rounds` times, the cases in turn, and reports the best round's ms per step (rank 0's clock):
  allreduce      all_reduce of 73,051 float32 (the FFNN's gradients), nothing else
  ar-1float      all_reduce of 1 float32: the latency alone
  local          the step on 128 rows, no communication (the floor for 2 ranks)
  ddp            DistributedDataParallel, defaults
  ddp-tuned      broadcast_buffers=False, gradient_as_bucket_view=True, static_graph=True, one bucket
  ddp-hook       ddp-tuned with the allreduce comm hook (torch.distributed.algorithms.ddp_comm_hooks)
  manual         backward, then one all_reduce of the flattened gradients (what DDP does, by hand)
  local+ar       the step on 128 rows and a separate all_reduce of 73,051 floats, one after the other
  local+ar1      the step on 128 rows, then an all_reduce of 1 float32: the ranks' meeting alone
  spin+ar        1 ms of a Python busy loop (no torch), then the all_reduce of 73,051 floats
  sleep+ar       1 ms asleep, then the all_reduce of 73,051 floats: after the threads went idle
The machine is shared (2 cores, other sessions' work at once): run it under the CPU lock, and read
the ratios within one run rather than the milliseconds across runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

ROWS, FEATURES, GLOBAL_BATCH = 68_635, 28, 256


def ffnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(28, 300), nn.ReLU(), nn.Linear(300, 150), nn.ReLU(), nn.Linear(150, 100),
                         nn.ReLU(), nn.Linear(100, 50), nn.ReLU(), nn.Linear(50, 1))


def batches(rows: int, steps: int):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(steps, rows, FEATURES, generator=g)
    y = (torch.rand(steps, rows, 1, generator=g) > 0.5).float()
    return x, y


def timed(step, steps: int, sync=None) -> float:
    """ms per step over `steps` steps (after 20 warm-up ones)."""
    for i in range(20):
        step(i)
    if sync:
        sync()
    began = time.perf_counter()
    for i in range(steps):
        step(i)
    if sync:
        sync()
    return (time.perf_counter() - began) / steps * 1e3


def train_step(model, opt, x, y, loss_fn=nn.BCEWithLogitsLoss()):
    def step(i):
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x[i % len(x)]), y[i % len(y)]).backward()
        opt.step()
    return step


def single(args) -> None:
    torch.set_num_threads(1)
    x, y = batches(GLOBAL_BATCH, 64)
    model = ffnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    times = [timed(train_step(model, opt, x, y), args.steps) for _ in range(args.rounds)]
    print(f"1 process, 1 thread, batch {GLOBAL_BATCH}: {min(times):.3f} ms/step (rounds "
          f"{', '.join(f'{t:.3f}' for t in times)}); epoch of {args.steps} steps {min(times) * args.steps / 1e3:.3f} s")


def distributed(args) -> None:
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    if args.interop1:
        torch.set_num_interop_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local = GLOBAL_BATCH // world
    x, y = batches(local, 64)
    grads = torch.zeros(sum(p.numel() for p in ffnn().parameters()))
    barrier = dist.barrier

    def case_allreduce():
        return timed(lambda i: dist.all_reduce(grads), args.steps, barrier)

    one = torch.zeros(1)

    def case_allreduce_one():
        return timed(lambda i: dist.all_reduce(one), args.steps, barrier)

    def case_local():
        model = ffnn()
        return timed(train_step(model, torch.optim.SGD(model.parameters(), lr=0.01), x, y), args.steps, barrier)

    def case_ddp(**options):
        def run():
            hook = options.pop("hook", False)
            model = DDP(ffnn(), **options)
            if hook:
                model.register_comm_hook(None, default_hooks.allreduce_hook)
            return timed(train_step(model, torch.optim.SGD(model.parameters(), lr=0.01), x, y), args.steps, barrier)
        return run

    tuned = {"broadcast_buffers": False, "gradient_as_bucket_view": True, "static_graph": True, "bucket_cap_mb": 100}

    def case_manual():
        model = ffnn()
        params = list(model.parameters())
        for p in params:
            dist.broadcast(p.data, 0)
        opt = torch.optim.SGD(params, lr=0.01)
        loss_fn = nn.BCEWithLogitsLoss()

        def step(i):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[i % len(x)]), y[i % len(y)]).backward()
            flat = torch.cat([p.grad.reshape(-1) for p in params])
            dist.all_reduce(flat)
            flat /= world
            offset = 0
            for p in params:
                n = p.numel()
                p.grad.copy_(flat[offset:offset + n].view_as(p))
                offset += n
            opt.step()
        return timed(step, args.steps, barrier)

    def case_local_then(tensor):
        def run():
            model = ffnn()
            step = train_step(model, torch.optim.SGD(model.parameters(), lr=0.01), x, y)

            def both(i):
                step(i)
                dist.all_reduce(tensor)
            return timed(both, args.steps, barrier)
        return run

    def after(wait):
        def both(i):
            wait()
            dist.all_reduce(grads)
        return lambda: timed(both, args.steps, barrier)

    def spin(seconds=1e-3):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    cases = {"allreduce": case_allreduce, "ar-1float": case_allreduce_one, "local": case_local, "ddp": case_ddp(),
             "ddp-tuned": case_ddp(**tuned), "ddp-hook": case_ddp(hook=True, **tuned), "manual": case_manual,
             "local+ar": case_local_then(grads), "local+ar1": case_local_then(one), "spin+ar": after(spin),
             "sleep+ar": after(lambda: time.sleep(1e-3))}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, case in cases.items():
            times[name].append(case())
    if rank == 0:
        print(f"{world} gloo ranks, 1 thread each (interop threads {torch.get_num_interop_threads()}), "
              f"{local} rows a rank, GLOO_SOCKET_IFNAME={os.environ.get('GLOO_SOCKET_IFNAME', '-')}; "
              f"{args.steps} steps, best of {args.rounds} (median):")
        for name, t in times.items():
            print(f"  {name:<10} {min(t):7.3f} ms/step  ({statistics.median(t):.3f})  epoch "
                  f"{min(t) * args.steps / 1e3:.3f} s")
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=ROWS // GLOBAL_BATCH)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--single", action="store_true", help="the 1-process baseline")
    parser.add_argument("--interop1", action="store_true", help="torch.set_num_interop_threads(1) in each rank")
    args = parser.parse_args()
    single(args) if args.single else distributed(args)


if __name__ == "__main__":
    main()
