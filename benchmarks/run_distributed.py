"""Data-parallel scaling of fastcnn (MPI) against PyTorch DDP (gloo) on the seeds' CNN.

    python benchmarks/run_distributed.py                 # 1 and 2 ranks, one thread each
    python benchmarks/run_distributed.py --ranks 1,2,4 --batch 128 --steps 30

What it measures (every rank runs ``--threads`` kernel threads; the global batch is split):

* images/s of ``fit`` on the seeds' CNN (1x28x28 inputs, 1,199,882 parameters, Adam) at each
  rank count, and of PyTorch DDP (gloo backend) on the same model, batch, threads and data
  size; scaling efficiency = images/s at N ranks / (N x images/s at 1 rank);
* the allreduce time against the message size (MPI ``Iallreduce`` as fastcnn waits for it);
* the host's ceiling: N independent single-process trainings at batch ``B / N`` run at once
  (no communication at all): what N ranks could reach at best on this host, which separates
  the cost of smaller per-rank batches and of cores shared with other work from the cost of
  communication;
* how much of the gradient allreduce the overlap hides: the time a step spends blocked in the
  reduction with the buckets started during the backward pass (``overlap``) and with all of
  them started after it (``no overlap``); hidden = 1 - blocked(overlap) / blocked(no overlap).

One rank is a plain process (no mpiexec, no MPI); N > 1 ranks are launched with ``mpiexec -n
N``. Results: ``benchmarks/results/distributed-<UTC time>/results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


# -- the fastcnn rank -------------------------------------------------------------------------

def fastcnn_worker(a: argparse.Namespace) -> None:
    import fastcnn as fc
    from fastcnn import distributed as dist

    world = dist.init()
    fc.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    n = a.batch * a.steps
    x = rng.random((n, *_shape(a)), dtype=np.float32)
    y = rng.integers(0, 10, n)

    def model() -> fc.Sequential:
        m = fc.models.build(a.model, _shape(a), 10, seed=0)
        m.compile(fc.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        return m

    def epoch_time(m: fc.Sequential, repeats: int) -> float:
        m.fit(x[:a.batch * 3], y[:a.batch * 3], batch_size=a.batch, seed=0, verbose=0)  # warm
        best = []
        for _ in range(repeats):
            dist.barrier()
            t0 = time.perf_counter()
            m.fit(x, y, batch_size=a.batch, seed=0, verbose=0)
            best.append(time.perf_counter() - t0)
        return float(np.median(best))

    out: dict = {"world": world, "threads": a.threads, "batch": a.batch, "steps": a.steps}
    m = model()
    t = epoch_time(m, a.repeats)
    out["images_per_s"] = n / t
    out["step_ms"] = 1e3 * t / a.steps
    if world > 1:
        for key, overlap, progress in (("overlap", True, "thread"),
                                       ("overlap_poll", True, "poll"),
                                       ("no_overlap", False, "poll")):
            m = model()
            r = dist.attach(m, overlap=overlap, progress=progress)
            epoch_time(m, 1)
            r.stats.update(steps=0, wait_s=0.0)
            t = epoch_time(m, a.repeats)
            out[key] = {"step_ms": 1e3 * t / a.steps,
                        "blocked_ms": 1e3 * r.stats["wait_s"] / max(r.stats["steps"], 1),
                        "bucket_bytes": r.stats["bytes"], "buckets": r.stats["buckets"]}
            dist.detach(m)
        comm = dist._state.comm()
        sizes = [2 ** k for k in range(12, 25, 2)]  # 4 KiB .. 16 MiB
        curve = []
        for size in sizes:
            buf = np.ones(size // 4, np.float32)
            reps = max(5, min(200, (1 << 24) // size))
            for _ in range(3):
                comm.iallreduce(buf).wait("warm-up")
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(reps):
                comm.iallreduce(buf).wait("benchmark allreduce")
            dt = (time.perf_counter() - t0) / reps
            curve.append({"bytes": size, "ms": 1e3 * dt, "GB_per_s": size / dt / 1e9})
        out["allreduce"] = curve
    if dist.is_main():
        Path(a.json).write_text(json.dumps(out))
    dist.shutdown()


def _shape(a: argparse.Namespace) -> tuple[int, int, int]:
    """Per-sample input shape of the benchmarked model."""
    return (1, 28, 28) if a.model == "seeds_cnn" else (3, 32, 32)


# -- the PyTorch DDP rank ---------------------------------------------------------------------

def _torch_rank(rank: int, world: int, port: int, a: argparse.Namespace, path: str) -> None:
    import torch
    import torch.distributed as tdist
    from torch import nn

    torch.set_num_threads(a.threads)
    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                             world_size=world)
    torch.manual_seed(0)
    net: nn.Module = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10))
    if a.model != "seeds_cnn":  # the same network as fastcnn's, from its weights
        import fastcnn as fc

        net = fc.models.build(a.model, _shape(a), 10, seed=0).to_torch(logits=True)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    loss_fn = nn.CrossEntropyLoss()
    local = a.batch // world
    g = torch.Generator().manual_seed(rank)
    xs = torch.rand((a.steps, local, *_shape(a)), generator=g)
    ys = torch.randint(0, 10, (a.steps, local), generator=g)

    def epoch(k: int) -> None:
        for i in range(k):
            opt.zero_grad(set_to_none=True)
            loss_fn(net(xs[i]), ys[i]).backward()
            opt.step()

    epoch(3)
    times = []
    for _ in range(a.repeats):
        tdist.barrier()
        t0 = time.perf_counter()
        epoch(a.steps)
        times.append(time.perf_counter() - t0)
    t = float(np.median(times))
    if rank == 0:
        Path(path).write_text(json.dumps({"world": world, "images_per_s": a.batch * a.steps / t,
                                          "step_ms": 1e3 * t / a.steps}))
    tdist.destroy_process_group()


def torch_run(world: int, a: argparse.Namespace, path: str) -> dict | None:
    try:
        import torch.multiprocessing as tmp
    except ImportError:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp.spawn(_torch_rank, args=(world, port, a, path), nprocs=world, join=True)
    return json.loads(Path(path).read_text())


# -- the driver -------------------------------------------------------------------------------

def fastcnn_run(world: int, a: argparse.Namespace, path: str) -> dict:
    env = {k: v for k, v in os.environ.items()}
    env.update(OMP_NUM_THREADS=str(a.threads), FASTCNN_NUM_THREADS=str(a.threads))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--json", path,
           "--batch", str(a.batch), "--steps", str(a.steps), "--threads", str(a.threads),
           "--repeats", str(a.repeats), "--model", a.model]
    if world > 1:
        mpiexec = Path(sys.executable).parent / "mpiexec"
        exe = str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec")
        if exe is None:
            raise SystemExit("mpiexec not found: pip install \"fastcnn[mpi]\"")
        cmd = [exe, "-n", str(world), *cmd]
    subprocess.run(cmd, check=True, env=env)
    return json.loads(Path(path).read_text())


def ceiling_run(world: int, a: argparse.Namespace, out: Path) -> float:
    """images/s of ``world`` independent 1-rank trainings at batch B / world, run at once."""
    env = {k: v for k, v in os.environ.items()}
    env.update(OMP_NUM_THREADS=str(a.threads), FASTCNN_NUM_THREADS=str(a.threads))
    procs, paths = [], []
    for i in range(world):
        path = str(out / f"ceiling_{world}_{i}.json")
        paths.append(path)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--json", path,
               "--batch", str(a.batch // world), "--steps", str(a.steps), "--threads",
               str(a.threads), "--repeats", str(a.repeats), "--model", a.model]
        procs.append(subprocess.Popen(cmd, env=env))
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("a ceiling run failed")
    return sum(json.loads(Path(q).read_text())["images_per_s"] for q in paths)


def markdown(res: dict) -> str:
    shape = "x".join(map(str, res.get("shape", (1, 28, 28))))
    lines = [f"{res.get('model', 'seeds_cnn')} ({shape}, Adam), global batch {res['batch']}, "
             f"{res['threads']} thread(s) per rank, {res['steps']} steps per timed epoch; "
             f"{res['machine']}", "",
             "| ranks | fastcnn images/s | scaling eff. | host ceiling images/s | "
             "PyTorch DDP (gloo) images/s | scaling eff. | fastcnn / DDP |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    f1 = res["fastcnn"][0]["images_per_s"]
    t1 = res["torch"][0]["images_per_s"] if res["torch"] else None
    for i, f in enumerate(res["fastcnn"]):
        w = f["world"]
        t = res["torch"][i] if res["torch"] else None
        lines.append(
            f"| {w} | {f['images_per_s']:.0f} | {f['images_per_s'] / (w * f1):.0%} | "
            f"{res['ceiling'].get(str(w), f1):.0f} | "
            + (f"{t['images_per_s']:.0f} | {t['images_per_s'] / (w * t1):.0%} | "
               f"{f['images_per_s'] / t['images_per_s']:.2f}x |" if t else "- | - | - |"))
    multi = [f for f in res["fastcnn"] if f["world"] > 1]
    if multi:
        f = multi[0]
        n = f["no_overlap"]
        lines += ["", f"Gradient allreduce at {f['world']} ranks "
                  f"({n['bucket_bytes'] / 2**20:.2f} MiB in {n['buckets']} buckets):", "",
                  "| mode | step ms | blocked in the reduction ms/step | hidden |",
                  "| --- | --- | --- | --- |"]
        for key, label in (("overlap", "overlap, progress thread"),
                           ("overlap_poll", "overlap, polled at layer ends"),
                           ("no_overlap", "no overlap (all after the backward)")):
            o = f[key]
            hidden = 1 - o["blocked_ms"] / n["blocked_ms"] if n["blocked_ms"] > 0 else 0.0
            lines.append(f"| {label} | {o['step_ms']:.1f} | {o['blocked_ms']:.2f} | "
                         f"{hidden:.0%} |")
        lines += ["", "| message | allreduce ms | GB/s |", "| --- | --- | --- |"]
        lines += [f"| {c['bytes'] / 1024:.0f} KiB | {c['ms']:.3f} | {c['GB_per_s']:.2f} |"
                  for c in f["allreduce"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", default="1,2", help="rank counts (default 1,2)")
    p.add_argument("--batch", type=int, default=64, help="global batch (default 64)")
    p.add_argument("--steps", type=int, default=24, help="steps per timed epoch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="kernel threads per rank")
    p.add_argument("--model", default="seeds_cnn",
                   help="seeds_cnn (1x28x28, default) or a fastcnn.models name such as resnet20 "
                        "(3x32x32)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch DDP")
    p.add_argument("--out", default=None, help="output folder")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        fastcnn_worker(a)
        return 0
    ranks = [int(r) for r in a.ranks.split(",")]
    if ranks[0] != 1:
        raise SystemExit("--ranks must start with 1 (the baseline of the scaling efficiency)")
    if any(a.batch % r for r in ranks):
        raise SystemExit(f"--batch {a.batch} must be divisible by every rank count {ranks}")
    out = Path(a.out or HERE / "results" / time.strftime("distributed-%Y%m%dT%H%M%SZ",
                                                          time.gmtime()))
    out.mkdir(parents=True, exist_ok=True)
    import fastcnn as fc

    info = fc.info()
    res: dict = {"model": a.model, "shape": list(_shape(a)), "batch": a.batch,
                 "threads": a.threads, "steps": a.steps,
                 "machine": f"{os.cpu_count()} cores, fastcnn {info['version']} "
                            f"({info['cpu_isa']}), load average before "
                            f"{os.getloadavg()[0]:.1f}", "fastcnn": [], "torch": [],
                 "ceiling": {}}
    for w in ranks:
        res["fastcnn"].append(fastcnn_run(w, a, str(out / f"fastcnn_{w}.json")))
        print(f"fastcnn {w} rank(s): {res['fastcnn'][-1]['images_per_s']:.0f} images/s",
              flush=True)
    for w in ranks[1:]:
        res["ceiling"][str(w)] = ceiling_run(w, a, out)
        print(f"host ceiling {w} independent processes: {res['ceiling'][str(w)]:.0f} images/s",
              flush=True)
    if not a.no_torch:
        for w in ranks:
            t = torch_run(w, a, str(out / f"torch_{w}.json"))
            if t is None:
                res["torch"] = []
                break
            res["torch"].append(t)
            print(f"PyTorch DDP {w} rank(s): {t['images_per_s']:.0f} images/s", flush=True)
    (out / "results.json").write_text(json.dumps(res, indent=1))
    md = markdown(res)
    (out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
