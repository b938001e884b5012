#!/usr/bin/env python
"""A/B of two builds of fastcnn._cpu on the passes of a training step, interleaved in time.

Two worker processes, one per build (``--old``: a saved ``_cpu*.so``, run from a copy of the
package; the other the package as imported here), each capture the same steady training step
(:func:`fastcnn.bench.profile.capture`, the same seed) and build the profile's rows
(:func:`fastcnn.bench.profile.build_parts`: each conv's backward-data and weight-gradient call
exactly as the layer makes it, bias gradient and fused ReLU / max pool included). Then rounds
alternate the workers row by row (the order flipped every round): each sample is the CPU time
(``time.process_time``) of ``--number`` back-to-back calls, the medians over ``--rounds`` are
printed with the FMA-peak share (``--peak`` GFLOP/s of one thread) and the minor page faults
per call (getrusage). Rows: the whole step and the conv rows (``--only`` substrings).

    python benchmarks/run_step_passes_ab.py --old /tmp/_cpu_old.so --model seeds_cnn --batch 64
    python benchmarks/run_step_passes_ab.py --old /tmp/_cpu_old.so --model resnet20 --batch 128
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

WORKER = r"""
import json, resource, sys, time
import fastcnn
from fastcnn.bench.profile import _model, build_parts, capture
model, batch, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fastcnn.set_num_threads(threads)
net, x, y = _model(model, batch, 1e-3, 0.9, 0)
step = lambda: net.train_on_batch(x, y)
step()
parts = build_parts(capture(net, step), None)
fns, flop = {"step": step}, {"step": 0}
for p in parts:
    if p.kind.startswith("conv"):
        key = f"{p.layer} {p.kind} {p.what}"
        fns[key], flop[key] = p.fastcnn, p.flop
for f in fns.values():
    f()
print(json.dumps({"keys": list(fns), "flop": flop}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    f = fns[req["key"]]
    m0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = time.process_time()
    for _ in range(req["number"]):
        f()
    t = (time.process_time() - t) / req["number"]
    flt = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - m0) / req["number"]
    print(json.dumps({"ms": t * 1e3, "minflt": flt}), flush=True)
"""


def _worker(pythonpath: str, args: argparse.Namespace) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=pythonpath, OMP_NUM_THREADS=str(args.threads))
    return subprocess.Popen([sys.executable, "-c", WORKER, args.model, str(args.batch),
                             str(args.threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)


def _ask(w: subprocess.Popen[str], req: dict[str, Any]) -> dict[str, Any]:
    assert w.stdin is not None and w.stdout is not None
    w.stdin.write(json.dumps(req) + "\n")
    w.stdin.flush()
    return json.loads(w.stdout.readline())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="the A build: a saved _cpu*.so")
    ap.add_argument("--model", default="seeds_cnn")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--number", type=int, default=3)
    ap.add_argument("--peak", type=float, default=78.3, help="GFLOP/s of one thread's peak")
    ap.add_argument("--only", default="", help="comma-separated substrings of the rows")
    args = ap.parse_args()
    import fastcnn

    pkg = Path(fastcnn.__file__).parent
    tmp = Path(tempfile.mkdtemp(prefix="fastcnn_ab_"))
    try:
        shutil.copytree(pkg, tmp / "fastcnn", ignore=shutil.ignore_patterns("__pycache__"))
        for so in (tmp / "fastcnn").glob("_cpu*.so"):
            so.unlink()
        shutil.copy(args.old, tmp / "fastcnn" / Path(args.old).name.replace("_old", ""))
        if not list((tmp / "fastcnn").glob("_cpu*.so")):
            raise SystemExit("--old must be named like _cpu*.so")
        workers = {"old": _worker(str(tmp), args), "new": _worker(str(pkg.parent), args)}
        heads = {k: json.loads(w.stdout.readline()) for k, w in workers.items()}  # type: ignore
        keys = [k for k in heads["new"]["keys"] if k == "step" or not args.only or
                any(s in k for s in args.only.split(","))]
        ms: dict[str, dict[str, list[float]]] = {k: {"old": [], "new": []} for k in keys}
        flt: dict[str, dict[str, list[float]]] = {k: {"old": [], "new": []} for k in keys}
        for r in range(args.rounds):
            for key in keys:
                for which in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    res = _ask(workers[which], {"key": key, "number": args.number})
                    ms[key][which].append(res["ms"])
                    flt[key][which].append(res["minflt"])
        print(f"{args.model} batch {args.batch}, {args.threads} thread(s), CPU ms medians of "
              f"{args.rounds} x {args.number} calls, load {os.getloadavg()}")
        for key in keys:
            o, n = (float(np.median(ms[key][w])) for w in ("old", "new"))
            fl = heads["new"]["flop"].get(key, 0)
            pk = (f"  {100 * fl / (o * 1e-3) / 1e9 / args.peak:4.0f}% -> "
                  f"{100 * fl / (n * 1e-3) / 1e9 / args.peak:4.0f}%" if fl else "")
            f0, f1 = (float(np.median(flt[key][w])) for w in ("old", "new"))
            print(f"{key:58s} {o:8.2f} -> {n:8.2f} ms ({o / n:4.2f}x){pk}  "
                  f"minflt {f0:.0f} -> {f1:.0f}", flush=True)
        for w in workers.values():
            w.stdin.close()  # type: ignore[union-attr]
            w.wait()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
