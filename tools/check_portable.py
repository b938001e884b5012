#!/usr/bin/env python3
"""Portable by construction: the compiled objects outside the ISA files use x86-64 baseline only.

fastcnn's wheel must run on any x86-64 CPU. Only the files under ``csrc/cpu/avx2`` and
``csrc/cpu/avx512`` are compiled with ISA flags (CMakeLists.txt), and the dispatcher calls them
after checking the CPU. This tool disassembles (``objdump -d``) every object file of a CMake build
directory and fails when

1. a baseline object (any other source: the generic kernels, the drivers, the dispatcher, the
   bindings, the CUDA host code) holds an instruction beyond x86-64 baseline (SSE2): anything
   VEX / EVEX / XOP encoded (AVX, AVX2, FMA, F16C, BMI, AVX-512), a ymm / zmm / mask register,
   or an SSE3 / SSSE3 / SSE4 / POPCNT / LZCNT / MOVBE / CRC32 mnemonic;
2. an inline function or template (a weak symbol: the linker keeps one copy of it) is defined by
   a baseline object and by an ISA object whose copy holds such instructions: the linker may keep
   the ISA copy and baseline callers would run it (BUILD-NOTES.md);
3. the ISA objects hold no VEX instruction at all: then this detector (or the ISA flags) is
   broken and a pass above would mean nothing.

Usage::

    python tools/check_portable.py BUILD_DIR        # a CMake build tree (pip's -Cbuild-dir=...)

Exit status 0 when portable, 1 when not (the offending functions and instructions are listed),
2 when the build directory holds no objects to check or objdump is missing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ISA_DIRS = ("/csrc/cpu/avx2/", "/csrc/cpu/avx512/")

# Legacy prefixes that may precede a VEX / EVEX prefix (segment overrides, address size);
# 66 / F2 / F3 / F0 / REX before VEX are #UD, so compilers never emit them there.
_SKIPPABLE_PREFIXES = {0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x67}
_WIDE_REGISTER = re.compile(r"%(ymm|zmm)\d+|%xmm(1[6-9]|2\d|3[01])\b|%k[0-7]\b")
# Non-VEX instructions newer than x86-64's SSE2 baseline (AT&T mnemonics, size suffix allowed).
# tzcnt is left out on purpose: GCC emits "rep bsf" for __builtin_ctz at baseline, which objdump
# prints as tzcnt and which old CPUs run as bsf.
_BEYOND_SSE2 = frozenset("""
    addsubps addsubpd haddps haddpd hsubps hsubpd lddqu movddup movshdup movsldup fisttp
    monitor mwait
    pabsb pabsw pabsd palignr phaddw phaddd phaddsw phsubw phsubd phsubsw pmaddubsw pmulhrsw
    pshufb psignb psignw psignd
    blendpd blendps blendvpd blendvps dppd dpps extractps insertps movntdqa mpsadbw packusdw
    pblendvb pblendw pcmpeqq pextrb pextrd pextrq phminposuw pinsrb pinsrd pinsrq pmaxsb pmaxsd
    pmaxud pmaxuw pminsb pminsd pminud pminuw pmovsxbw pmovsxbd pmovsxbq pmovsxwd pmovsxwq
    pmovsxdq pmovzxbw pmovzxbd pmovzxbq pmovzxwd pmovzxwq pmovzxdq pmuldq pmulld ptest roundpd
    roundps roundsd roundss
    crc32 pcmpestri pcmpestrm pcmpgtq pcmpistri pcmpistrm
    popcnt lzcnt movbe aesenc aesenclast aesdec aesdeclast aesimc aeskeygenassist pclmulqdq
    sha1rnds4 sha1nexte sha1msg1 sha1msg2 sha256rnds2 sha256msg1 sha256msg2
""".split())
_SIZE_SUFFIX = re.compile(r"^(.*?)(b|w|l|q)$")
_FUNCTION = re.compile(r"^[0-9a-f]+ <(.+)>:$")
_INSN = re.compile(r"^\s*[0-9a-f]+:\t([0-9a-f ]+)\t(.*)$")


@dataclass
class ObjectReport:
    """What the disassembly of one object found: per function, its beyond-baseline
    instructions (address-free text), and the count of VEX-encoded ones."""

    path: Path
    isa: bool
    offending: dict[str, list[str]] = field(default_factory=dict)
    vex_count: int = 0


def is_isa_object(path: Path) -> bool:
    """True for an object compiled from csrc/cpu/avx2 or csrc/cpu/avx512 (CMake mirrors the
    source path under CMakeFiles/<target>.dir/)."""
    p = "/" + path.as_posix()
    return any(d in p for d in ISA_DIRS)


def beyond_baseline(raw: list[int], text: str) -> str | None:
    """Why one instruction (its bytes and objdump's AT&T text) is beyond x86-64 baseline, or
    None when it is baseline."""
    i = 0
    while i < len(raw) and raw[i] in _SKIPPABLE_PREFIXES:
        i += 1
    if i < len(raw):
        b = raw[i]
        if b in (0xC4, 0xC5):
            return "VEX"
        if b == 0x62:
            return "EVEX"
        if b == 0x8F and i + 1 < len(raw) and raw[i + 1] & 0x38:  # pop r/m has reg = 0
            return "XOP"
    if _WIDE_REGISTER.search(text):
        return "ymm/zmm/mask register"
    words = text.split()
    mnemonic = words[0] if words else ""
    if mnemonic in ("rep", "repz", "repnz", "lock", "data16", "notrack", "bnd") and len(words) > 1:
        mnemonic = words[1]
    stem = mnemonic
    if stem not in _BEYOND_SSE2:
        m = _SIZE_SUFFIX.match(stem)
        stem = m.group(1) if m else stem
    if stem in _BEYOND_SSE2:
        return f"{mnemonic} (beyond SSE2)"
    return None


def parse_disassembly(lines: Iterable[str], report: ObjectReport) -> None:
    """Fill ``report`` from ``objdump -d -w`` output (one instruction per line, raw bytes)."""
    func = "?"
    for line in lines:
        m = _FUNCTION.match(line)
        if m:
            func = m.group(1)
            continue
        m = _INSN.match(line)
        if not m:
            continue
        try:
            raw = [int(x, 16) for x in m.group(1).split()]
        except ValueError:
            continue
        text = m.group(2).strip()
        why = beyond_baseline(raw, text)
        if why is None:
            continue
        if why in ("VEX", "EVEX"):
            report.vex_count += 1
        report.offending.setdefault(func, []).append(f"{text}  [{why}]")


def disassemble(objdump: str, path: Path) -> ObjectReport:
    """Disassemble one object's executable sections."""
    report = ObjectReport(path, is_isa_object(path))
    out = subprocess.run([objdump, "-d", "-w", str(path)], check=True, capture_output=True,
                         text=True, errors="replace").stdout
    parse_disassembly(out.splitlines(), report)
    return report


def weak_functions(nm: str, path: Path) -> set[str]:
    """The weak (COMDAT: inline functions, templates) code symbols an object defines."""
    out = subprocess.run([nm, "--defined-only", str(path)], check=True, capture_output=True,
                         text=True, errors="replace").stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in ("W", "u"):
            names.add(parts[2])
    return names


def demangle(names: list[str]) -> dict[str, str]:
    """Mangled -> readable names (c++filt when present)."""
    tool = shutil.which("c++filt")
    if not tool or not names:
        return {n: n for n in names}
    out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True).stdout
    readable = out.splitlines()
    return dict(zip(names, readable, strict=False)) if len(readable) == len(names) else {
        n: n for n in names}


def find_objects(build_dir: Path) -> list[Path]:
    """Every object CMake compiled from csrc/ in the build tree."""
    return sorted(p for p in build_dir.rglob("*.o")
                  if "CMakeFiles" in p.parts and "/csrc/" in "/" + p.as_posix())


def check(build_dir: Path, objdump: str = "objdump", nm: str = "nm",
          out: object = sys.stdout) -> int:
    """Run the three checks on ``build_dir``; print the findings; return the exit status."""
    def say(msg: str) -> None:
        print(msg, file=out)  # type: ignore[arg-type]

    for tool in (objdump, nm):
        if shutil.which(tool) is None:
            say(f"check_portable: {tool} was not found (binutils)")
            return 2
    objects = find_objects(build_dir)
    isa_objs = [p for p in objects if is_isa_object(p)]
    base_objs = [p for p in objects if not is_isa_object(p)]
    if not base_objs or not isa_objs:
        say(f"check_portable: {build_dir} holds {len(base_objs)} baseline and {len(isa_objs)} "
            "ISA objects compiled from csrc/ (expected both): pass a CMake build directory, "
            "e.g. pip's -Cbuild-dir=...")
        return 2
    t0 = time.perf_counter()
    reports = [disassemble(objdump, p) for p in objects]
    failed = False

    bad = [r for r in reports if not r.isa and r.offending]
    for r in bad:
        failed = True
        names = demangle(list(r.offending))
        say(f"NOT PORTABLE: {r.path.relative_to(build_dir)} (baseline object):")
        for func, insns in r.offending.items():
            say(f"  {names[func]}: {len(insns)} instruction(s), e.g. " + "; ".join(insns[:3]))

    isa_weak_avx: dict[str, Path] = {}
    for r in reports:
        if r.isa:
            for name in weak_functions(nm, r.path):
                if name in r.offending:
                    isa_weak_avx[name] = r.path
    clashes: dict[str, list[Path]] = {}
    for p in base_objs:
        for name in weak_functions(nm, p) & isa_weak_avx.keys():
            clashes.setdefault(name, []).append(p)
    if clashes:
        failed = True
        names = demangle(list(clashes))
        for name, users in clashes.items():
            say(f"NOT PORTABLE: the inline / template function {names[name]} is defined with AVX "
                f"instructions in {isa_weak_avx[name].relative_to(build_dir)} and also by "
                f"{', '.join(str(u.relative_to(build_dir)) for u in users)}: the linker keeps "
                "one copy, possibly the ISA one. Put the ISA file's helpers in its own (or an "
                "anonymous) namespace.")

    vex = sum(r.vex_count for r in reports if r.isa)
    if vex == 0:
        failed = True
        say(f"check_portable: the {len(isa_objs)} ISA objects hold no VEX instruction: their "
            "-mavx2 / -mavx512* flags are missing, or this detector is broken")
    dt = time.perf_counter() - t0
    say(f"check_portable: {len(base_objs)} baseline objects "
        f"{'NOT portable' if bad or clashes else 'x86-64 baseline only'}; {len(isa_objs)} ISA "
        f"objects ({vex} VEX/EVEX instructions, as expected); {len(isa_weak_avx)} weak ISA "
        f"functions with AVX, {len(clashes)} shared with baseline objects ({dt:.1f} s)")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build_dir", type=Path, help="a CMake build directory of fastcnn")
    ap.add_argument("--objdump", default="objdump")
    ap.add_argument("--nm", default="nm")
    args = ap.parse_args(argv)
    if not args.build_dir.is_dir():
        print(f"check_portable: {args.build_dir} is not a directory", file=sys.stderr)
        return 2
    return check(args.build_dir, args.objdump, args.nm)


if __name__ == "__main__":
    sys.exit(main())
