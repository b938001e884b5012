"""Static report of fastcnn's CUDA kernels: what the compiler made of them, no GPU needed.

For each source file it compiles the device code for one architecture (``nvcc -cubin
-arch=sm_90 -Xptxas -v``), reads registers, spills, stack and shared memory per kernel from
ptxas, derives the theoretical occupancy (blocks and warps per SM for a 256-thread block on
sm_90: 64 K registers, 2048 threads, 32 blocks, 228 KiB shared memory per SM), disassembles
the cubin (``cuobjdump -sass``) and finds each kernel's main loop: the smallest backward-branch
span that holds the most FFMA instructions (for a GEMM, the k loop). Its "FFMA share" is FFMA
over all instructions of that span; one instruction issues per clock per scheduler on Hopper,
so the share caps the fraction of FP32 peak the loop can reach. "LDGSTS" counts the loop's
cp.async copies (global -> shared without registers: sm_80+ GEMM main loops must have them),
"LDGSTS.128" those of them that copy 16 bytes (cp.async.cg: operands whose rows are contiguous
and aligned), "STG.128" the kernel's 128-bit global stores (the GEMM epilogues' four-column
groups).

    python tools/cuda_static.py [--files conv2d.cu linear.cu ...] [--json out.json] [--check]

``--check`` exits 1 when a GEMM main loop's FFMA share is below its floor (FLOORS below), has no
LDGSTS (its shared tiles not filled by cp.async), a 16-byte-copy variant (VEC16) has no
LDGSTS.128 in its main loop, a conv forward / weight-gradient kernel on the 32-bit path has no
128-bit epilogue store (STORE128), or a kernel on a 32-bit (or single) index path spills.
Tools are found on PATH, under /usr/local/cuda*/bin, or in the NVIDIA wheels (``pip install
nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm``, the ``cuda-tools`` extra: cuobjdump -sass runs
nvdisasm). Exit code 2: a tool is missing.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILES = ["conv2d.cu", "linear.cu", "gemm.cu", "reduce.cu", "maxpool2d.cu", "relu.cu"]
ARCH = "sm_90"
# sm_90 limits (CUDA occupancy calculator)
SM_REGS, SM_THREADS, SM_BLOCKS, SM_SMEM = 65536, 2048, 32, 228 * 1024
REG_UNIT, SMEM_UNIT, SMEM_RESERVED = 256, 128, 1024

# (regex on the demangled kernel name, label, FFMA-share floor of its main loop or None), the
# first match wins. Floors apply to the 32-bit paths (the 64-bit fallbacks, for tensors of 2^31
# elements and more, are reported only). Issue 14's targets are conv >= 60 %, dense and dcol
# >= 70 % on the main 64 x 128 tile; the smaller tiles' floors sit just under what they reach (a
# 4 x 4 register tile does half the FMAs per k step of the 4 x 8 one for a similar load and
# index overhead). Raised with cp.async (no register staging: one LDGSTS per element instead of
# LDG + STS): conv 64-66 % -> floor 62 %, dense / dcol 76 % -> 74 %, their small tiles 65-66 %
# -> 62 %; the conv small tiles (52-56 %) keep 50 %.
FLOORS: list[tuple[str, str, float | None]] = [
    (r"gemm_kernel<64x128, ConvFwdOp", "conv fwd", 0.62),
    (r"gemm_kernel<64x128, ConvBwdWeightsOp", "conv dw", 0.62),
    (r"gemm_kernel<64x128, ConvDcolOp", "conv dcol", 0.74),
    (r"gemm_kernel<64x128, LinearOp", "dense", 0.74),
    (r"gemm_kernel<(64x64|32x128), Conv(Fwd|BwdWeights)Op", "conv (small tile)", 0.50),
    (r"gemm_kernel<(64x64|32x128), (ConvDcolOp|LinearOp)", "dense / dcol (small tile)", 0.62),
    (r"gemm_kernel<", "gemm", None),
]

# Kernels whose main loop must copy with 16-byte cp.async (LDGSTS.128): the variants the
# launchers pick for aligned operands whose rows are contiguous along m / n.
VEC16 = (r"gemm_kernel<.*(Conv(Fwd|Dcol)Op<int, true>"
         r"|LinearOp<(true|false), (true|false), int, true>)")
# Kernels whose epilogue must have 128-bit stores (STG.E.128): the conv forward and weight
# gradient on the 32-bit path (their 64-bit path, at its register cap, stores scalars).
STORE128 = r"gemm_kernel<.*Conv(Fwd|BwdWeights)Op<int\b"


@dataclass
class Kernel:
    """One kernel's compiler facts (ptxas) and its main loop's instruction mix (SASS)."""

    file: str
    mangled: str
    name: str = ""
    label: str = ""
    path: str = "single"  # "32-bit", "64-bit" or "single" (no narrow/wide variants)
    registers: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    stack: int = 0
    smem: int = 0
    threads: int = 256
    blocks_per_sm: int = 0
    occupancy: float = 0.0
    loop_instructions: int = 0
    loop_ffma: int = 0
    loop_ldgsts: int = 0
    loop_ldgsts128: int = 0  # of loop_ldgsts: 16-byte copies
    stg128: int = 0  # 128-bit global stores in the whole kernel
    ffma_share: float = 0.0
    floor: float | None = None
    mix: dict[str, int] = field(default_factory=dict)


def find_tool(name: str) -> str | None:
    """The path of a CUDA tool: PATH, /usr/local/cuda*/bin, then the NVIDIA wheels."""
    hit = shutil.which(name)
    if hit:
        return hit
    cands = sorted(glob.glob(f"/usr/local/cuda*/bin/{name}"))
    for prefix in {sys.prefix, sysconfig.get_paths()["purelib"]}:
        cands += sorted(glob.glob(f"{prefix}/**/nvidia/cu*/bin/{name}", recursive=True))
    venv = os.environ.get("FASTCNN_CUDA_TOOLS")
    if venv:
        cands.insert(0, str(Path(venv) / name))
    for c in cands:
        if os.access(c, os.X_OK):
            return c
    return None


def demangle(names: list[str]) -> dict[str, str]:
    """Mangled -> demangled via c++filt (identity when it is missing)."""
    filt = shutil.which("c++filt")
    if not filt or not names:
        return {n: n for n in names}
    out = subprocess.run([filt], input="\n".join(names), capture_output=True, text=True).stdout
    lines = out.splitlines()
    if len(lines) != len(names):
        return {n: n for n in names}
    return dict(zip(names, lines, strict=True))


def short_name(dem: str) -> str:
    """A readable kernel name: namespaces and the parameter list dropped."""
    s = re.sub(r"\(anonymous namespace\)::", "", dem)
    s = re.sub(r"fastcnn::cuda::(gemm::)?", "", s)
    s = re.sub(r"Cfg<(\d+), (\d+), \d+, \d+, \d+>", r"\1x\2", s)
    depth, cut = 0, len(s)
    for i, ch in enumerate(s):  # drop the parameter list (first '(' at template depth 0)
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0:
            cut = i
            break
    return s[:cut]


def index_path(name: str) -> str:
    """32-bit / 64-bit / single: from the index template argument (Idx = int / long, or a
    trailing kWide bool of a Conv op / col2im / pooling kernel)."""
    targs = name[name.find("<") :] if "<" in name else ""
    if re.search(r"\blong\b", targs) or re.search(r"(Op|kernel)<true>", name):
        return "64-bit"
    if re.search(r"\bint\b", targs) or re.search(r"(Op|kernel)<false>", name):
        return "32-bit"
    return "single"


def parse_ptxas(text: str, file: str) -> dict[str, Kernel]:
    """Kernels of one ptxas -v log."""
    ks: dict[str, Kernel] = {}
    cur: Kernel | None = None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            cur = ks.setdefault(m.group(1), Kernel(file=file, mangled=m.group(1)))
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads",
                      line)
        if m:
            cur.stack, cur.spill_stores, cur.spill_loads = map(int, m.groups())
        m = re.search(r"Used (\d+) registers", line)
        if m:
            cur.registers = int(m.group(1))
            sm = re.search(r"(\d+) bytes smem", line)
            cur.smem = int(sm.group(1)) if sm else 0
    return ks


def parse_sass(text: str) -> dict[str, list[tuple[int, str, str]]]:
    """Function -> [(address, opcode, full text)] from cuobjdump -sass."""
    funcs: dict[str, list[tuple[int, str, str]]] = {}
    cur: list[tuple[int, str, str]] | None = None
    for line in text.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            cur = funcs.setdefault(m.group(1), [])
            continue
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
        if m and cur is not None:
            body = m.group(2).strip()
            op = re.sub(r"^@!?U?P[T0-9]+\s+", "", body).split()[0]
            cur.append((int(m.group(1), 16), op, body))
    return funcs


def main_loop(ins: list[tuple[int, str, str]]) -> tuple[int, int, dict[str, int]]:
    """(instructions, FFMA, opcode mix) of the smallest backward-branch span with the most FFMA."""
    span = loop_span(ins)
    if span is None:
        return 0, 0, {}
    lo, hi = span
    mix: dict[str, int] = {}
    for j in range(lo, hi + 1):
        base = ins[j][1].split(".")[0]
        if base != "NOP":
            mix[base] = mix.get(base, 0) + 1
    total = sum(mix.values())
    return total, mix.get("FFMA", 0), mix


def wide(ops: list[str], prefix: str) -> int:
    """How many opcodes start with prefix and have a .128 width (STG.E.128, LDGSTS.E....128)."""
    return sum(1 for op in ops if op.startswith(prefix) and ".128" in op)


def loop_span(ins: list[tuple[int, str, str]]) -> tuple[int, int] | None:
    """Indices (first, last) of the smallest backward-branch span with the most FFMA, or None."""
    addr_idx = {a: i for i, (a, _, _) in enumerate(ins)}
    best: tuple[int, int, int, int] | None = None  # (-ffma, size, lo, hi)
    for i, (a, op, body) in enumerate(ins):
        if op != "BRA":
            continue
        m = re.search(r"BRA\s+(?:`\()?(0x[0-9a-f]+)", body)
        if not m:
            continue
        t = int(m.group(1), 16)
        if t > a or t not in addr_idx:
            continue
        lo, hi = addr_idx[t], i
        ffma = sum(1 for j in range(lo, hi + 1) if ins[j][1].startswith("FFMA"))
        key = (-ffma, hi - lo + 1, lo, hi)
        if ffma > 0 and (best is None or key < best):
            best = key
    if best is None:
        return None
    return best[2], best[3]


def occupancy(k: Kernel) -> None:
    """Theoretical blocks per SM and warp occupancy on sm_90."""
    warps = (k.threads + 31) // 32
    regs_per_warp = -(-max(k.registers, 1) * 32 // REG_UNIT) * REG_UNIT
    by_regs = SM_REGS // (regs_per_warp * warps)
    smem = -(-(k.smem + SMEM_RESERVED) // SMEM_UNIT) * SMEM_UNIT
    by_smem = SM_SMEM // smem if k.smem else SM_BLOCKS
    k.blocks_per_sm = max(0, min(by_regs, by_smem, SM_THREADS // k.threads, SM_BLOCKS))
    k.occupancy = k.blocks_per_sm * warps / (SM_THREADS // 32)


def _tool_env() -> dict[str, str]:
    """The environment for cuobjdump: NVDISASM_PATH set to the nvdisasm found (cuobjdump -sass
    runs it, and looks only on PATH and there)."""
    env = dict(os.environ)
    nvdisasm = find_tool("nvdisasm")
    if nvdisasm and "NVDISASM_PATH" not in env:
        env["NVDISASM_PATH"] = str(Path(nvdisasm).parent)
    return env


def analyse(files: list[str], nvcc: str, cuobjdump: str, extra: list[str]) -> list[Kernel]:
    """Compile each file for ARCH and return its kernels."""
    out: list[Kernel] = []
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            src = ROOT / "csrc" / "cuda" / f
            cubin = Path(tmp) / (Path(f).stem + ".cubin")
            cmd = [nvcc, "-std=c++17", f"-arch={ARCH}", "-cubin", "-Xptxas", "-v",
                   f"-I{ROOT / 'csrc'}", *extra, str(src), "-o", str(cubin)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"nvcc failed on {f}:\n{r.stderr[-4000:]}")
            ks = parse_ptxas(r.stderr + r.stdout, f)
            r = subprocess.run([cuobjdump, "-sass", str(cubin)], capture_output=True,
                               text=True, env=_tool_env())
            if r.returncode != 0:
                raise RuntimeError(f"cuobjdump -sass failed on {f}:\n{r.stderr[-4000:]}")
            sass = r.stdout
            funcs = parse_sass(sass)
            names = demangle(list(ks))
            for mangled, k in ks.items():
                k.name = short_name(names[mangled])
                k.path = index_path(k.name)
                for pat, label, floor in FLOORS:
                    if re.search(pat, k.name):
                        k.label, k.floor = label, floor
                        break
                occupancy(k)
                ins = funcs.get(mangled, [])
                n, ffma, mix = main_loop(ins)
                k.loop_instructions, k.loop_ffma, k.mix = n, ffma, mix
                k.loop_ldgsts = mix.get("LDGSTS", 0)
                span = loop_span(ins)
                if span is not None:
                    k.loop_ldgsts128 = wide([op for _, op, _ in ins[span[0]:span[1] + 1]],
                                            "LDGSTS")
                k.stg128 = wide([op for _, op, _ in ins], "STG")
                k.ffma_share = ffma / n if n else 0.0
                out.append(k)
    return out


def table(ks: list[Kernel]) -> str:
    """A Markdown table of the kernels."""
    rows = ["| kernel | path | regs | spill st/ld (B) | smem (B) | blocks/SM (occ.) "
            "| main loop: FFMA / instr | FFMA share | floor | LDGSTS | LDGSTS.128 | STG.128 |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for k in ks:
        loop = f"{k.loop_ffma} / {k.loop_instructions}" if k.loop_instructions else "-"
        share = f"{100 * k.ffma_share:.0f} %" if k.loop_instructions else "-"
        floor = f"{100 * k.floor:.0f} %" if k.floor is not None else ""
        rows.append(f"| `{k.name}` | {k.path} | {k.registers} | {k.spill_stores}/{k.spill_loads} "
                    f"| {k.smem} | {k.blocks_per_sm} ({100 * k.occupancy:.0f} %) | {loop} "
                    f"| {share} | {floor} | {k.loop_ldgsts if k.loop_instructions else '-'} "
                    f"| {k.loop_ldgsts128 if k.loop_instructions else '-'} | {k.stg128} |")
    return "\n".join(rows)


def problems(ks: list[Kernel]) -> list[str]:
    """What --check fails on: a main loop under its floor, a GEMM main loop without cp.async
    (LDGSTS), a 16-byte-copy variant without LDGSTS.128, a conv forward / weight-gradient epilogue
    without 128-bit stores, a spill on a 32-bit / single path. (The width rules apply to kernels
    read from SASS: loop_instructions > 0.)"""
    bad = []
    for k in ks:
        if k.loop_instructions and re.search(VEC16, k.name) and not k.loop_ldgsts128:
            bad.append(f"{k.name}: no LDGSTS.128 (16-byte cp.async) in the main loop of a "
                       f"16-byte-copy variant")
        if k.loop_instructions and re.search(STORE128, k.name) and not k.stg128:
            bad.append(f"{k.name}: no 128-bit store (STG.E.128) in the epilogue")
        if k.name.startswith("void gemm_kernel<") and k.loop_instructions and not k.loop_ldgsts:
            bad.append(f"{k.name}: no LDGSTS (cp.async) in the main loop: its shared tiles are "
                       f"filled synchronously")
        if k.floor is not None and k.path != "64-bit" and k.ffma_share < k.floor:
            bad.append(f"{k.name}: main-loop FFMA share {100 * k.ffma_share:.1f} % < floor "
                       f"{100 * k.floor:.0f} %")
        if k.path != "64-bit" and (k.spill_stores or k.spill_loads):
            bad.append(f"{k.name} ({k.path} path): spills {k.spill_stores} B stored, "
                       f"{k.spill_loads} B loaded")
    return bad


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="+", default=DEFAULT_FILES, help="csrc/cuda/ files")
    ap.add_argument("--json", help="also write the kernels as JSON here")
    ap.add_argument("--check", action="store_true", help="exit 1 on a floor miss or a spill")
    ap.add_argument("-D", dest="defines", action="append", default=[], help="extra -D for nvcc")
    args = ap.parse_args(argv)
    nvcc, cuobjdump = find_tool("nvcc"), find_tool("cuobjdump")
    nvdisasm = find_tool("nvdisasm")
    if not nvcc or not cuobjdump or not nvdisasm:
        print(f"cuda_static: needs nvcc ({nvcc}), cuobjdump ({cuobjdump}) and nvdisasm "
              f"({nvdisasm}); pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm",
              file=sys.stderr)
        return 2
    ks = analyse(args.files, nvcc, cuobjdump, [f"-D{d}" for d in args.defines])
    print(table(ks))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(k) for k in ks], indent=1))
    bad = problems(ks)
    for b in bad:
        print("FAIL:", b, file=sys.stderr)
    return 1 if (args.check and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
