"""CuPy's allocator hooks for the fake cupy: ``MemoryPointer`` (owns its bytes), the default
pool's ``malloc``, ``cupy.cuda.using_allocator`` (a stack the fake's ``empty`` consults; the
plain path, no allocator set, is ``numpy.empty``)."""

from __future__ import annotations

from typing import Any

import numpy as np

#: using_allocator's stack (innermost last); read by cupy._new
ALLOCATORS: list[Any] = []


class _MemoryPointer:
    """``cupy.cuda.MemoryPointer``: owns ``size`` bytes (64-byte aligned)."""

    def __init__(self, size: int) -> None:
        raw = np.empty(int(size) + 64, dtype=np.uint8)
        off = (-raw.__array_interface__["data"][0]) % 64
        self._buf = raw[off:off + int(size)]
        self.ptr = self._buf.__array_interface__["data"][0] if size else 0
        self.size = int(size)


class _MemoryPool:
    def malloc(self, size: int) -> _MemoryPointer:
        return _MemoryPointer(size)

    def used_bytes(self) -> int:
        return 0

    def free_all_blocks(self, stream=None) -> None:
        pass


class _UsingAllocator:
    def __init__(self, allocator=None) -> None:
        self.allocator = allocator

    def __enter__(self):
        ALLOCATORS.append(self.allocator)
        return self

    def __exit__(self, *exc):
        ALLOCATORS.pop()
        return False
