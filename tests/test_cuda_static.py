"""tools/cuda_static.py: the static report of the CUDA kernels (registers, spills, main-loop FFMA
share in the sm_90 SASS).

The parser tests run everywhere (synthetic ptxas / SASS text). ``test_static_report_floors``
compiles the GEMM sources with nvcc and disassembles them with cuobjdump (which runs nvdisasm):
it is skipped unless all three are found (PATH, /usr/local/cuda*/bin or the NVIDIA wheels: the
cuda-tools extra) and fails when a main loop's FFMA share is below its floor or a 32-bit path
spills. It takes a few minutes of nvcc; FASTCNN_STATIC_FILES (space-separated csrc/cuda
files) narrows it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cuda_static", ROOT / "tools" / "cuda_static.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["cuda_static"] = mod
    spec.loader.exec_module(mod)
    return mod


cs = _tool()

PTXAS = """\
ptxas info    : Compiling entry function '_Z3fooPf' for 'sm_90'
ptxas info    : Function properties for _Z3fooPf
    16 bytes stack frame, 12 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 128 registers, used 1 barriers, 12800 bytes smem
ptxas info    : Compiling entry function '_Z3barv' for 'sm_90'
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 32 registers, used 0 barriers
"""

SASS = """\
\t\tFunction : _Z3fooPf
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   IADD3 R2, R2, 0x1, RZ ;
        /*0020*/                   FFMA R3, R4, R5, R3 ;
        /*0030*/                   FFMA R6, R4, R5, R6 ;
        /*0040*/                   LDS.128 R8, [R9] ;
        /*0050*/               @P0 BRA 0x20 ;
        /*0060*/              @!P1 BRA 0x10 ;
        /*0070*/                   EXIT ;
"""


def test_parse_ptxas() -> None:
    ks = cs.parse_ptxas(PTXAS, "x.cu")
    foo, bar = ks["_Z3fooPf"], ks["_Z3barv"]
    assert (foo.registers, foo.spill_stores, foo.spill_loads, foo.stack, foo.smem) == (
        128, 12, 8, 16, 12800)
    assert (bar.registers, bar.spill_stores, bar.smem) == (32, 0, 0)


def test_main_loop_is_the_smallest_span_with_the_most_ffma() -> None:
    ins = cs.parse_sass(SASS)["_Z3fooPf"]
    assert [op for _, op, _ in ins][:3] == ["MOV", "IADD3", "FFMA"]
    n, ffma, mix = cs.main_loop(ins)
    # the inner loop 0x20..0x50 (2 FFMA of 4 instructions), not the outer 0x10..0x60
    assert (n, ffma) == (4, 2)
    assert mix == {"FFMA": 2, "LDS": 1, "BRA": 1}


def test_occupancy() -> None:
    k = cs.Kernel(file="x", mangled="m", registers=128, smem=12800, threads=256)
    cs.occupancy(k)
    assert (k.blocks_per_sm, k.occupancy) == (2, 0.25)
    k = cs.Kernel(file="x", mangled="m", registers=32, smem=0, threads=256)
    cs.occupancy(k)
    assert (k.blocks_per_sm, k.occupancy) == (8, 1.0)


def test_index_path_and_names() -> None:
    name = cs.short_name("void fastcnn::cuda::gemm::gemm_kernel<fastcnn::cuda::gemm::Cfg<64, 128, "
                         "4, 8, 2>, fastcnn::cuda::(anonymous namespace)::ConvFwdOp<int> >("
                         "fastcnn::cuda::(anonymous namespace)::ConvFwdOp<int>)")
    assert name == "void gemm_kernel<64x128, ConvFwdOp<int> >"
    assert cs.index_path(name) == "32-bit"
    assert cs.index_path("void gemm_kernel<64x64, LinearOp<true, false, long> >") == "64-bit"
    assert cs.index_path("void col2im_kernel<true>") == "64-bit"
    assert cs.index_path("relu_fwd_kernel") == "single"


def test_problems_flags_floor_misses_and_32bit_spills() -> None:
    ok = cs.Kernel(file="x", mangled="a", name="gemm_kernel<64x128, LinearOp<true, true, int> >",
                   path="32-bit", floor=0.70, ffma_share=0.72)
    low = cs.Kernel(file="x", mangled="b", name="gemm_kernel<64x128, ConvFwdOp<int> >",
                    path="32-bit", floor=0.60, ffma_share=0.38)
    spill = cs.Kernel(file="x", mangled="c", name="relu_fwd_kernel", path="single",
                      spill_stores=4, spill_loads=4)
    wide = cs.Kernel(file="x", mangled="d", name="gemm_kernel<64x128, ConvFwdOp<long> >",
                     path="64-bit", floor=0.60, ffma_share=0.3, spill_stores=8)
    bad = cs.problems([ok, low, spill, wide])
    assert len(bad) == 2
    assert "FFMA share 38.0 % < floor 60 %" in bad[0]
    assert "spills 4 B" in bad[1]


def test_floors_cover_every_gemm_op() -> None:
    for op in ("ConvFwdOp<int>", "ConvBwdWeightsOp<int>", "ConvDcolOp<int>",
               "LinearOp<true, true, int>"):
        for tile in ("64x128", "64x64", "32x128"):
            name = f"void gemm_kernel<{tile}, {op} >"
            floors = [f for pat, _, f in cs.FLOORS if __import__("re").search(pat, name)]
            assert floors and floors[0] is not None, name


@pytest.mark.skipif(not (cs.find_tool("nvcc") and cs.find_tool("cuobjdump")
                         and cs.find_tool("nvdisasm")),
                    reason="needs nvcc, cuobjdump and nvdisasm (pip install \".[cuda-tools]\")")
def test_static_report_floors() -> None:
    files = os.environ.get("FASTCNN_STATIC_FILES", " ".join(cs.DEFAULT_FILES)).split()
    ks = cs.analyse(files, cs.find_tool("nvcc"), cs.find_tool("cuobjdump"), [])
    assert ks, "no kernels found"
    gemms = [k for k in ks if k.floor is not None and k.path == "32-bit"]
    if any(f in files for f in ("conv2d.cu", "linear.cu")):
        assert gemms, "no 32-bit GEMM main loop found"
        assert all(k.loop_ffma > 0 for k in gemms)
    assert cs.problems(ks) == [], cs.table(ks)


def test_gemm_main_loops_must_fill_shared_memory_with_cp_async() -> None:
    sass = SASS.replace("LDS.128 R8, [R9]", "LDGSTS.E.LTC128B [R9], desc[UR4][R10.64]")
    _, _, mix = cs.main_loop(cs.parse_sass(sass)["_Z3fooPf"])
    assert mix["LDGSTS"] == 1
    name = "void gemm_kernel<64x128, LinearOp<true, true, int> >"
    sync = cs.Kernel(file="x", mangled="a", name=name, path="32-bit", floor=0.70, ffma_share=0.75,
                     loop_instructions=340, loop_ffma=256, loop_ldgsts=0)
    bad = cs.problems([sync])
    assert len(bad) == 1 and "no LDGSTS" in bad[0]
    sync.loop_ldgsts = 6
    assert cs.problems([sync]) == []
    assert "| 6 |" in cs.table([sync])


def test_widths_16_byte_copies_and_128_bit_stores() -> None:
    sass = SASS.replace("LDS.128 R8, [R9]", "LDGSTS.E.BYPASS.128.ZFILL [R9], desc[UR4][R10.64]")
    sass = sass.replace("MOV R1, c[0x0][0x28]", "STG.E.128 desc[UR4][R2.64], R4")
    ins = cs.parse_sass(sass)["_Z3fooPf"]
    lo, hi = cs.loop_span(ins)
    loop_ops = [op for _, op, _ in ins[lo:hi + 1]]
    assert cs.wide(loop_ops, "LDGSTS") == 1
    assert cs.wide(loop_ops, "STG") == 0  # the store is outside the loop
    assert cs.wide([op for _, op, _ in ins], "STG") == 1
    assert cs.wide(["LDGSTS.E.LTC128B", "STG.E"], "LDGSTS") == 0  # 4-byte forms
    assert cs.loop_span(cs.parse_sass(SASS.replace("FFMA", "FADD"))["_Z3fooPf"]) is None


def test_problems_flags_missing_16_byte_copies_and_128_bit_stores() -> None:
    def k(name: str, **kw: int) -> object:
        return cs.Kernel(file="x", mangled=name, name=name, path="32-bit", floor=0.5,
                         ffma_share=0.7, loop_instructions=300, loop_ffma=210, loop_ldgsts=6,
                         **kw)

    vec = k("void gemm_kernel<64x128, ConvDcolOp<int, true> >", stg128=8)
    fwd = k("void gemm_kernel<64x128, ConvFwdOp<int, false> >")
    dw = k("void gemm_kernel<32x128, ConvBwdWeightsOp<int> >", stg128=4)
    wide = k("void gemm_kernel<64x128, ConvFwdOp<long, false> >")  # 64-bit: scalar epilogue
    wide.path = "64-bit"
    bad = cs.problems([vec, fwd, dw, wide])
    assert len(bad) == 2, bad
    assert "ConvDcolOp<int, true>" in bad[0] and "no LDGSTS.128" in bad[0]
    assert "ConvFwdOp<int, false>" in bad[1] and "no 128-bit store" in bad[1]
    vec.loop_ldgsts128, fwd.stg128 = 2, 8
    assert cs.problems([vec, fwd, dw, wide]) == []
    assert "| 2 | 8 |" in cs.table([vec])
    lin = k("void gemm_kernel<64x64, LinearOp<false, false, int, true> >")
    assert "no LDGSTS.128" in cs.problems([lin])[0]
