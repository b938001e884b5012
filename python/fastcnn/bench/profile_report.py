"""The text report of a step profile (:func:`fastcnn.bench.profile.profile_step`'s document):
per row, per kind of pass, the step's totals and the gap to a target speed-up over PyTorch."""

from __future__ import annotations

from typing import Any

__all__ = ["by_kind", "gap", "split_cost", "table", "totals"]


def _f(v: float | None, fmt: str, width: int) -> str:
    return f"{v:{width}{fmt}}" if v is not None else f"{'-':>{width}}"


def _ratio(t: float | None, f: float | None) -> float | None:
    return t / f if t is not None and f else None


def totals(run: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per side (``fastcnn`` / ``torch``): ``step`` (CPU ms), ``parts`` (the rows' sum; for
    torch only the rows with a twin) and ``overhead`` = step - parts; ``wall`` the step's
    wall-clock ms."""
    out: dict[str, dict[str, float | None]] = {}
    for side in ("fastcnn", "torch"):
        step = run["step"].get(side)
        vals = [r[f"{side}_cpu_ms"] for r in run["rows"] if r[f"{side}_cpu_ms"] is not None]
        parts = sum(vals) if vals else None
        out[side] = {"step": step["cpu_ms"] if step else None,
                     "wall": step["wall_ms"] if step else None, "parts": parts,
                     "overhead": (step["cpu_ms"] - parts) if step and parts is not None
                     else None}
    return out


def split_cost(run: dict[str, Any]) -> tuple[float, float] | None:
    """(the split backward calls' rows summed, the same calls unsplit) in CPU ms, or None when
    no backward was split."""
    whole = {r["call"]: r["fastcnn_whole_cpu_ms"] for r in run["rows"]
             if r.get("fastcnn_whole_cpu_ms") is not None}
    if not whole:
        return None
    split = sum(r["fastcnn_cpu_ms"] for r in run["rows"] if r.get("call") in whole)
    return split, sum(whole.values())


def by_kind(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows summed by kind of pass (``conv weight gradient``, ``BN backward``, ...), in
    order of fastcnn's time, largest first."""
    acc: dict[str, dict[str, Any]] = {}
    for r in run["rows"]:
        a = acc.setdefault(r["kind"], {"kind": r["kind"], "rows": 0, "flop": 0,
                                       "fastcnn_cpu_ms": 0.0, "torch_cpu_ms": 0.0,
                                       "twins": 0})
        a["rows"] += 1
        a["flop"] += r["flop"]
        a["fastcnn_cpu_ms"] += r["fastcnn_cpu_ms"]
        if r["torch_cpu_ms"] is not None:
            a["torch_cpu_ms"] += r["torch_cpu_ms"]
            a["twins"] += 1
    out = sorted(acc.values(), key=lambda a: -a["fastcnn_cpu_ms"])
    for a in out:
        if not a["twins"]:
            a["torch_cpu_ms"] = None
    return out


def gap(run: dict[str, Any], target: float) -> dict[str, float] | None:
    """What a ``target`` x PyTorch step needs: ``{"ratio"`` (now), ``"needed_ms"`` (fastcnn's
    step at the target), ``"cut_ms"`` (to take off), ``"cut_pct"`` (of the step)}``, CPU
    time; None without PyTorch."""
    t = totals(run)
    f, th = t["fastcnn"]["step"], t["torch"]["step"]
    if f is None or th is None:
        return None
    need = th / target
    return {"ratio": th / f, "needed_ms": need, "cut_ms": max(0.0, f - need),
            "cut_pct": 100.0 * max(0.0, f - need) / f}


def table(doc: dict[str, Any], target: float | None = None) -> str:
    """The profile as text: one block per thread count (rows in the step's order, then by
    kind, then the totals and, with ``target``, the gap to it)."""
    peak1 = doc.get("peak_gflops_1t")
    lines = [f"{doc['model']} training step, batch {doc['batch']}, ISA {doc['isa']}, "
             f"{doc['torch']}; FMA peak {peak1:.1f} GFLOP/s per thread" if peak1 else
             f"{doc['model']} training step, batch {doc['batch']}, ISA {doc['isa']}, "
             f"{doc['torch']}; FMA peak unknown",
             f"load average at the end: {doc.get('loadavg')}; ms = median CPU ms (all "
             "threads); GFLOP/s on wall time; % peak = FLOP / (CPU s x one thread's peak); "
             "ratio = torch / fastcnn (> 1: fastcnn faster)"]
    if doc.get("fused"):
        lines.append("layers fused into another's kernel (their work is in that row): "
                     + ", ".join(f"{k} -> {v}" for k, v in doc["fused"].items()))
    for run in doc["runs"]:
        t = totals(run)
        step = t["fastcnn"]["step"] or float("nan")
        lines += ["", f"--- {run['threads']} thread(s) ---",
                  f"{'#':>3} {'layer':<22} {'pass':<24} {'what':<26} {'ms':>8} {'share':>6} "
                  f"{'GFLOP/s':>8} {'%peak':>6} {'torch ms':>9} {'ratio':>6}"]
        for i, r in enumerate(run["rows"]):
            fc = r["fastcnn_cpu_ms"]
            gfs = r["flop"] / (r["fastcnn_wall_ms"] * 1e6) if r["flop"] else None
            pct = (100.0 * r["flop"] / (fc * 1e6 * peak1) if r["flop"] and peak1 else None)
            lines.append(
                f"{i:>3} {r['layer'][:22]:<22} {r['kind'][:24]:<24} {r['what'][:26]:<26} "
                f"{fc:8.2f} {100 * fc / step:5.1f}% {_f(gfs, '.1f', 8)} {_f(pct, '.0f', 6)} "
                f"{_f(r['torch_cpu_ms'], '.2f', 9)} "
                f"{_f(_ratio(r['torch_cpu_ms'], fc), '.2f', 6)}")
        lines += ["", f"    {'by pass':<40} {'rows':>4} {'ms':>8} {'share':>6} {'%peak':>6} "
                      f"{'torch ms':>9} {'ratio':>6}"]
        for a in by_kind(run):
            pct = (100.0 * a["flop"] / (a["fastcnn_cpu_ms"] * 1e6 * peak1)
                   if a["flop"] and peak1 else None)
            lines.append(f"    {a['kind'][:40]:<40} {a['rows']:>4} {a['fastcnn_cpu_ms']:8.2f} "
                         f"{100 * a['fastcnn_cpu_ms'] / step:5.1f}% {_f(pct, '.0f', 6)} "
                         f"{_f(a['torch_cpu_ms'], '.2f', 9)} "
                         f"{_f(_ratio(a['torch_cpu_ms'], a['fastcnn_cpu_ms']), '.2f', 6)}")
        f, th = t["fastcnn"], t["torch"]
        lines += ["",
                  f"    sum of rows            fastcnn {_f(f['parts'], '.1f', 8)} ms   "
                  f"torch {_f(th['parts'], '.1f', 8)} ms",
                  f"    overhead (step - sum)  fastcnn {_f(f['overhead'], '.1f', 8)} ms   "
                  f"torch {_f(th['overhead'], '.1f', 8)} ms",
                  f"    whole step (CPU)       fastcnn {_f(f['step'], '.1f', 8)} ms   "
                  f"torch {_f(th['step'], '.1f', 8)} ms   ratio "
                  f"{_f(_ratio(th['step'], f['step']), '.2f', 5)}",
                  f"    whole step (wall)      fastcnn {_f(f['wall'], '.1f', 8)} ms   "
                  f"torch {_f(th['wall'], '.1f', 8)} ms   ratio "
                  f"{_f(_ratio(th['wall'], f['wall']), '.2f', 5)}"]
        sc = split_cost(run)
        if sc and f["overhead"] is not None:
            lines += [f"    split backward calls   as rows {sc[0]:.1f} ms, as the step's single "
                      f"calls {sc[1]:.1f} ms ({sc[0] - sc[1]:+.1f} ms: a fused pool / ReLU "
                      "backward routed in both passes, ...)",
                      f"    overhead with those single calls: fastcnn "
                      f"{f['overhead'] + sc[0] - sc[1]:.1f} ms"]
        g = gap(run, target) if target else None
        if g:
            lines.append(f"    target {target:.2f}x: fastcnn's step must be {g['needed_ms']:.1f} "
                         f"ms: {g['cut_ms']:.1f} ms ({g['cut_pct']:.0f} %) to take off")
    return "\n".join(lines)
