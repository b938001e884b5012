"""Array kinds: which kind an array is (NumPy, CuPy, PyTorch, any other DLPack object), how it
becomes the backend's array (``numpy.ndarray`` on the CPU, ``cupy.ndarray`` on the GPU) without
a copy, and how a result goes back to the caller's kind; plus the helpers for code that runs on
NumPy and CuPy arrays alike (:func:`array_module`, :func:`move`, :func:`to_host`,
:func:`assign`, ...). Neither CuPy nor PyTorch is imported unless an array of theirs is given.

The rules (:mod:`fastcnn.ops` applies them to every op through :func:`call_converted`):

* Backend arrays (NumPy, CuPy) are used as they are.
* A CPU ``torch.Tensor`` is viewed as NumPy (``tensor.numpy()``), a CUDA tensor as CuPy
  (``cupy.from_dlpack``): no copy; results come back as torch tensors on the input's device
  (``torch.from_numpy`` / ``torch.from_dlpack``, no copy either). An op on CUDA tensors runs on
  PyTorch's current stream (and device), so it is ordered with the user's torch work.
* Any other object with ``__dlpack__`` / ``__dlpack_device__`` (JAX, TensorFlow, ...) is viewed
  through ``numpy.from_dlpack`` / ``cupy.from_dlpack``; its results are NumPy / CuPy arrays (which
  speak DLPack, so ``jax.dlpack.from_dlpack(y)`` takes them back without a copy).
* Kinds may be mixed within one device (NumPy with CPU tensors; CuPy with CUDA tensors): results
  take the kind of the first array argument. Arrays on two devices are a TypeError.
* A tensor that requires grad while autograd is recording (``torch.is_grad_enabled()``) is a
  TypeError: the op would silently cut the user's graph. ``x.detach()`` says it on purpose and
  :mod:`fastcnn.torch` has the autograd ops; under ``torch.no_grad()`` (as for torch's own ops,
  nothing is recorded) such a tensor is accepted.
* A CUDA tensor when this fastcnn has no CUDA module, or CuPy is missing: a TypeError that says
  so and how to fix it (``x.cpu()``, or reinstall / install CuPy).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from . import _native

__all__ = [
    "array_module",
    "as_array",
    "assign",
    "call_converted",
    "call_tensors",
    "host_copy",
    "is_array_like",
    "is_cupy",
    "is_foreign",
    "is_torch",
    "move",
    "restore_kind",
    "to_backend",
    "to_device_like",
    "to_host",
    "torch_plain_types",
]

# Plain torch tensor types (filled once torch is imported and a tensor is seen): the ops' fast
# path sends them straight to the crossing.
_TORCH_PLAIN: set[type] = set()

# Types known to be backend arrays (checked by ``type(a) in NATIVE`` on the ops' fast path);
# CuPy's ndarray type and NumPy subclasses are added the first time one is seen.
NATIVE: set[type] = {np.ndarray, type(None)}

_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED = 1, 2, 3, 13


# ------------------------------------------------------------------------------------------------
# kinds


def is_cupy(a: Any) -> bool:
    """True for a ``cupy.ndarray`` (checked by type, without importing CuPy)."""
    return type(a).__module__.split(".")[0] == "cupy"


_TORCH_TENSOR: list[type] = []  # [torch.Tensor] once torch is imported


def is_torch(a: Any) -> bool:
    """True for a ``torch.Tensor`` (or subclass, e.g. ``nn.Parameter``); never imports torch
    (a tensor exists only once torch is imported)."""
    if not _TORCH_TENSOR:
        torch = sys.modules.get("torch")
        if torch is None or not hasattr(torch, "Tensor"):
            return False
        _TORCH_TENSOR.append(torch.Tensor)
        _torch_plain()
    return isinstance(a, _TORCH_TENSOR[0])


def is_foreign(a: Any) -> bool:
    """True for an array that is not the backend's kind but can be viewed as it: a torch tensor
    or another object with ``__dlpack__``. False for None, NumPy and CuPy arrays (whose types are
    then remembered in :data:`NATIVE`) and for non-arrays (the op's own check reports those)."""
    if type(a) in NATIVE:
        return False
    if is_cupy(a) or isinstance(a, np.ndarray):
        NATIVE.add(type(a))
        return False
    return is_torch(a) or hasattr(a, "__dlpack__")


_CPU = ("cpu", 0)


def _device(a: Any) -> tuple[str, int]:
    """("cpu", 0) or ("cuda", index) for a backend array or a foreign one (another DLPack
    device: (its name, index))."""
    if type(a) is np.ndarray:
        return _CPU
    if is_torch(a):
        if a.is_cuda:
            return ("cuda", int(a.get_device()))
        if a.is_cpu:
            return _CPU
        dev = a.device
        return (dev.type, 0 if dev.index is None else int(dev.index))
    if is_cupy(a):
        return ("cuda", int(a.device.id))
    if isinstance(a, np.ndarray):
        return _CPU
    try:
        kind, index = a.__dlpack_device__()
    except Exception:
        return _CPU
    if int(kind) in (_DL_CUDA, _DL_CUDA_MANAGED):
        return ("cuda", int(index))
    return _CPU if int(kind) in (_DL_CPU, _DL_CUDA_HOST) else (f"DLPack device {kind}", 0)


def _describe(a: Any) -> str:
    dev, index = _device(a)
    where = "the CPU" if dev == "cpu" else f"{dev}:{index}"
    if is_torch(a):
        return f"a torch tensor on {where}"
    if is_cupy(a):
        return f"a cupy array on {where}"
    if isinstance(a, np.ndarray):
        return "a numpy array (CPU)"
    return f"a {type(a).__name__} (DLPack) on {where}"


# ------------------------------------------------------------------------------------------------
# to the backend's kind and back


def _cupy_for(name: str, op: str, what: str) -> ModuleType:
    """CuPy, for viewing a CUDA array; a TypeError with the fix when it can't be used."""
    if not _native.cuda_built():
        raise TypeError(f"{op}: {name} is {what}, but this fastcnn was built without its CUDA "
                        f"module; pass {name}.cpu() (a CPU tensor), or reinstall fastcnn with a "
                        "CUDA toolkit present (FASTCNN_CUDA=ON)")
    try:
        import cupy
    except Exception as exc:
        raise TypeError(f"{op}: {name} is {what}; fastcnn's GPU path needs CuPy, which cannot "
                        f"be imported ({exc}): pip install 'fastcnn[cuda]', or pass "
                        f"{name}.cpu()") from exc
    return cupy


def _torch_to_backend(t: Any, name: str, op: str) -> Any:
    torch = sys.modules["torch"]
    if t.requires_grad:
        if torch.is_grad_enabled():
            raise _grad_refused(op, name)
        t = t.detach()
    if not t.is_cuda:
        try:
            return t.numpy()
        except (TypeError, RuntimeError) as exc:
            if t.layout != torch.strided:
                raise TypeError(f"{op}: {name} is a {t.layout} torch tensor; fastcnn takes "
                                f"dense tensors: pass {name}.to_dense()") from exc
            if not t.is_cpu:
                raise TypeError(f"{op}: {name} is a torch tensor on {t.device}; fastcnn takes "
                                f"CPU or CUDA tensors: pass {name}.cpu()") from exc
            raise TypeError(f"{op}: {name} (a torch {t.dtype} tensor) has no NumPy view "
                            f"({exc}); fastcnn computes in float32: pass {name}.float()") from exc
    if t.layout != torch.strided:
        raise TypeError(f"{op}: {name} is a {t.layout} torch tensor; fastcnn takes dense "
                        f"tensors: pass {name}.to_dense()")
    cupy = _cupy_for(name, op, f"a CUDA torch tensor ({t.device})")
    if t.dtype == torch.bfloat16:
        raise TypeError(f"{op}: {name} has dtype torch.bfloat16 but fastcnn computes in "
                        f"float32 only; convert it with {name}.float()")
    return cupy.from_dlpack(t)


def to_backend(a: Any, name: str = "x", op: str = "fastcnn") -> Any:
    """``a`` as the backend's array, sharing its memory: NumPy / CuPy arrays as they are, a CPU
    tensor as ``tensor.numpy()``, a CUDA tensor (or CUDA DLPack object) through
    ``cupy.from_dlpack``, a CPU DLPack object through ``numpy.from_dlpack``. Anything else is
    returned unchanged (not an array: the caller's check reports it).

    Raises:
        TypeError: a tensor that requires grad while autograd records, a CUDA array without
            fastcnn's CUDA module or CuPy, a device fastcnn has no backend for (message names
            ``name`` and the fix).
    """
    if not is_foreign(a):
        return a
    if is_torch(a):
        return _torch_to_backend(a, name, op)
    dev, _ = _device(a)
    try:
        if dev == "cpu":
            return np.from_dlpack(a)
        if dev == "cuda":
            return _cupy_for(name, op, _describe(a)).from_dlpack(a)
    except TypeError:
        raise
    except Exception as exc:
        raise TypeError(f"{op}: {name} ({type(a).__name__}) could not be viewed through DLPack "
                        f"({exc}); pass a numpy array (numpy.asarray({name}))") from exc
    raise TypeError(f"{op}: {name} is {_describe(a)}; fastcnn takes CPU or CUDA arrays")


def restore_kind(r: Any, like: Any) -> Any:
    """A backend result ``r`` (array, or a tuple / list of them, scalars and None passing
    through) as ``like``'s kind: torch tensors for a torch ``like`` (``torch.from_numpy`` for a
    NumPy result, ``torch.from_dlpack`` for a CuPy one: no copy), unchanged otherwise."""
    if isinstance(r, tuple | list):
        return type(r)(restore_kind(v, like) for v in r)
    if not is_torch(like) or r is None:
        return r
    torch = sys.modules["torch"]
    if is_cupy(r):
        return torch.from_dlpack(r)
    if isinstance(r, np.ndarray):
        return torch.from_numpy(r if r.flags.writeable else r.copy())
    return r


def _cuda_context(tensor: Any, any_cupy: bool, cupy: ModuleType) -> Any:
    """Run on the CUDA tensor's device, on PyTorch's current stream there (unless CuPy arrays
    take part: then on CuPy's current stream, DLPack's handshake ordering the tensors' work
    with it)."""
    stack = contextlib.ExitStack()
    index = int(tensor.get_device())
    stack.enter_context(cupy.cuda.Device(index))
    if not any_cupy and hasattr(cupy.cuda, "ExternalStream"):
        torch = sys.modules["torch"]
        ptr = int(torch.cuda.current_stream(tensor.device).cuda_stream)
        stack.enter_context(cupy.cuda.ExternalStream(ptr, index))
    return stack


def _torch_plain() -> set[type]:
    """The tensor types the CPU fast path takes as they are, ``{torch.Tensor,
    torch.nn.Parameter}`` (empty until torch is imported; subclasses take the general path)."""
    torch = sys.modules.get("torch")
    nn = getattr(torch, "nn", None)
    if torch is not None and hasattr(torch, "Tensor") and hasattr(nn, "Parameter"):
        _TORCH_PLAIN.update((torch.Tensor, nn.Parameter))
        _FROM_NUMPY.append(torch.from_numpy)
    return _TORCH_PLAIN


_FROM_NUMPY: list[Callable[[np.ndarray], Any]] = []  # [torch.from_numpy] once torch is seen


torch_plain_types = _TORCH_PLAIN  # the set itself (filled in place): for ops' _converts


def _grad_refused(op: str, name: str) -> TypeError:
    return TypeError(
        f"{op}: {name} is a torch tensor that requires grad; fastcnn does not record "
        f"autograd, so the result would silently cut your graph. Pass {name}.detach() "
        "(no gradient flows back through this op), call it under torch.no_grad(), or "
        "use fastcnn.torch, whose ops are differentiable")


def call_converted(fn: Callable[..., Any], op: str, positions: Sequence[tuple[int, str]],
                   keywords: Sequence[str], args: tuple[Any, ...] | list[Any],
                   kwargs: dict[str, Any], grad_ok: bool = False) -> Any:
    """``fn(*args, **kwargs)`` with the array arguments (``positions``: (index, name) of the
    positional ones in increasing index order, ``keywords``: the names) viewed as backend
    arrays and the result given back in the first array argument's kind; a result that *is* a
    converted argument (an ``out=``) comes back as the caller's object. The one crossing of
    tensors into fastcnn: :mod:`fastcnn.ops` (its ``_converts`` wrapper) and
    :mod:`fastcnn.torch` (:func:`call_tensors`) both come through here.

    The common case (positional CPU tensors, NumPy arrays or None; no array keyword) takes a
    fast path: one type test and one ``tensor.numpy()`` per tensor, ``torch.from_numpy`` per
    array result; anything else (CUDA, DLPack objects, keywords, errors) the general path.
    ``grad_ok``: tensors that require grad are detached instead of refused (the caller records
    autograd itself, as :mod:`fastcnn.torch` does).

    Raises:
        TypeError: arrays on two devices (naming both arguments), a tensor that requires grad
            while autograd records (unless ``grad_ok``), or a conversion error
            (:func:`to_backend`).
    """
    if kwargs:
        for name in keywords:
            if kwargs.get(name) is not None:
                return _call_general(fn, op, positions, keywords, list(args), kwargs, grad_ok)
    args_l = list(args)
    n = len(args_l)
    plain = _TORCH_PLAIN or _torch_plain()
    first: Any = None  # the first array argument (False for a NumPy one)
    for i, name in positions:
        if i >= n:
            break
        v = args_l[i]
        t = type(v)
        if t in plain:
            if v.requires_grad:
                if not grad_ok and sys.modules["torch"].is_grad_enabled():
                    raise _grad_refused(op, name)
                v = v.detach()
            try:
                args_l[i] = v.numpy()  # raises for CUDA / meta / sparse / bfloat16 tensors
            except (TypeError, RuntimeError, NotImplementedError):
                return _call_general(fn, op, positions, keywords, list(args), kwargs, grad_ok)
            if first is None:
                first = v
        elif t is np.ndarray:
            if first is None:
                first = False
        elif v is not None:
            return _call_general(fn, op, positions, keywords, list(args), kwargs, grad_ok)
    r = fn(*args_l, **kwargs)
    if type(r) is not np.ndarray or first is None:
        return r if first is None else _back_cpu(r, first is not False, positions, args_l, args)
    if r.base is not None:  # a view: perhaps a converted argument (an out=), given back as
        for i, _ in positions:  # the caller's object
            if i < n and r is args_l[i]:
                return args[i]
    if first is False:
        return r
    return _FROM_NUMPY[0](r if r.flags.writeable else r.copy())


def _back_cpu(r: Any, torch_first: bool, positions: Sequence[tuple[int, str]],
              args_l: list[Any], args: Sequence[Any]) -> Any:
    """The fast path's result that is not one NumPy array: tuples element-wise (a NumPy array
    as a tensor when the first array argument was one, ``torch.from_numpy``, no copy; a
    converted argument as the caller's object), lists through :func:`restore_kind`, anything
    else (None, floats) as it is."""
    if type(r) is tuple:
        return tuple([_back_cpu(v, torch_first, positions, args_l, args) for v in r])
    if isinstance(r, np.ndarray):
        n = len(args_l)
        for i, _ in positions:
            if i < n and r is args_l[i]:
                return args[i]
        if not torch_first:
            return r
        return _FROM_NUMPY[0](r if r.flags.writeable else r.copy())
    if torch_first and type(r) is list:
        return restore_kind(r, sys.modules["torch"].empty(0))
    return r


_POSITIONS: dict[int, tuple[tuple[int, str], ...]] = {}
_NO_KEYWORDS: dict[str, Any] = {}  # never written: call_converted reads it only


def call_tensors(fn: Callable[..., Any], *tensors: Any) -> Any:
    """``fn(*arrays)`` on zero-copy NumPy (CPU) or CuPy (CUDA) views of ``tensors`` (None stays
    None), arrays in the result given back as tensors (no copy): :func:`call_converted` with
    every argument an array and ``grad_ok`` (the caller records autograd, as
    :mod:`fastcnn.torch`'s ops do, whose ``call`` this is), so tensors that require grad are
    detached, not refused. Errors name the op ``fastcnn.torch``."""
    positions = _POSITIONS.get(len(tensors))
    if positions is None:
        positions = _POSITIONS[len(tensors)] = tuple(
            (i, f"argument {i}") for i in range(len(tensors)))
    return call_converted(fn, "fastcnn.torch", positions, (), tensors, _NO_KEYWORDS, True)


def _call_general(fn: Callable[..., Any], op: str, positions: Sequence[tuple[int, str]],
                  keywords: Sequence[str], args_l: list[Any], kwargs: dict[str, Any],
                  grad_ok: bool) -> Any:
    """:func:`call_converted`'s general path: any kinds, keywords, CUDA (run on PyTorch's
    current stream), every error worded."""
    arrays: list[tuple[Any, Any, str, Any, bool]] = []  # (container, key, name, value, foreign)
    n = len(args_l)
    for i, name in positions:
        if i < n and args_l[i] is not None:
            v = args_l[i]
            foreign = is_foreign(v)
            if foreign or type(v) in NATIVE:
                arrays.append((args_l, i, name, v, foreign))
    if kwargs:
        kwargs = dict(kwargs)
        for name in keywords:
            v = kwargs.get(name)
            if v is not None:
                foreign = is_foreign(v)
                if foreign or type(v) in NATIVE:
                    arrays.append((kwargs, name, name, v, foreign))
    if not arrays:  # non-arrays only: the op's own checks report them
        return fn(*args_l, **kwargs)
    name0, value0 = arrays[0][2], arrays[0][3]
    dev0 = _device(value0)
    cuda_tensor: tuple[str, Any] | None = None
    any_cupy = False
    for _, _, name, value, foreign in arrays:
        dev = dev0 if value is value0 else _device(value)
        if dev != dev0:
            if dev[0] == dev0[0] == "cuda":
                raise TypeError(f"{op}: all arrays must be on one GPU; {name0} is on "
                                f"cuda:{dev0[1]} but {name} on cuda:{dev[1]}")
            raise TypeError(
                f"{op}: all arrays must be on one device; {name0} is {_describe(value0)} but "
                f"{name} is {_describe(value)} (move them with .cpu() / .cuda() for tensors, "
                "cupy.asarray / cupy.asnumpy for arrays)")
        if dev is not _CPU and dev[0] == "cuda":
            if not foreign:
                any_cupy = True
            elif cuda_tensor is None and is_torch(value):
                cuda_tensor = (name, value)
    if cuda_tensor is None:
        return _run(fn, op, args_l, kwargs, arrays, value0, grad_ok)
    cupy = _cupy_for(cuda_tensor[0], op, _describe(cuda_tensor[1]))
    with _cuda_context(cuda_tensor[1], any_cupy, cupy):
        return _run(fn, op, args_l, kwargs, arrays, value0, grad_ok)


def _run(fn: Callable[..., Any], op: str, args_l: list[Any], kwargs: dict[str, Any],
         arrays: list[tuple[Any, Any, str, Any, bool]], like: Any, grad_ok: bool) -> Any:
    back: dict[int, Any] = {}
    for container, key, name, value, foreign in arrays:
        if foreign:
            if is_torch(value):
                conv = _torch_to_backend(value.detach() if grad_ok else value, name, op)
            else:
                conv = to_backend(value, name, op)
            back[id(conv)] = value
            container[key] = conv
    return _give_back(fn(*args_l, **kwargs), like, back)


def _give_back(r: Any, like: Any, back: dict[int, Any]) -> Any:
    """``r`` in ``like``'s kind, an element of ``back`` (id of a converted argument -> the
    caller's object) given back as the caller's object."""
    if type(r) is np.ndarray and is_torch(like) and id(r) not in back and r.flags.writeable:
        return sys.modules["torch"].from_numpy(r)
    if type(r) is tuple:
        return tuple([_give_back(v, like, back) for v in r])
    if r is None:
        return None
    if id(r) in back:
        return back[id(r)]
    return restore_kind(r, like)


# ------------------------------------------------------------------------------------------------
# the model's inputs


def as_array(a: Any, name: str = "x", op: str = "fastcnn") -> Any:
    """Any array-like as a backend array: NumPy / CuPy as they are, tensors and DLPack objects
    viewed without a copy (:func:`to_backend`), anything else (lists, ``__array__`` objects)
    through ``numpy.asarray``."""
    a = to_backend(a, name, op)
    if is_cupy(a) or isinstance(a, np.ndarray):
        return a
    return np.asarray(a)


def is_array_like(a: Any) -> bool:
    """True for what :func:`as_array` takes as one array (not as a dataset): NumPy / CuPy
    arrays, tensors, DLPack / ``__array__`` / array-interface objects, lists and tuples."""
    return (isinstance(a, np.ndarray | list | tuple) or is_cupy(a) or is_foreign(a)
            or hasattr(a, "__array__") or hasattr(a, "__array_interface__")
            or hasattr(a, "__cuda_array_interface__"))


# ------------------------------------------------------------------------------------------------
# code that runs on NumPy and CuPy arrays alike


def array_module(a: Any) -> ModuleType:
    """``cupy`` for a cupy array, else ``numpy``: write ``xp = array_module(a)`` and then
    ``xp.sum(...)``, ``xp.where(...)`` for code that runs on either device."""
    if is_cupy(a):
        import cupy

        return cupy
    return np


def to_host(a: Any) -> Any:
    """``a`` as a NumPy array (``cupy.asnumpy`` for a cupy array or CUDA tensor, a copy;
    ``numpy.asarray`` otherwise, no copy when it already is one or is a CPU tensor)."""
    a = to_backend(a, "array", "to_host")
    if is_cupy(a):
        import cupy

        return cupy.asnumpy(a)
    return np.asarray(a)


def to_device_like(a: Any, like: Any) -> Any:
    """``a`` on the device of the array ``like`` (uploaded / downloaded when they differ);
    non-array values (scalars, lists) become arrays of ``like``'s kind."""
    a = to_backend(a, "array", "to_device_like")
    if is_cupy(like):
        if is_cupy(a):
            return a
        import cupy

        return cupy.asarray(np.asarray(a))
    return to_host(a)


def move(a: Any, device: str) -> Any:
    """``a`` on ``device`` ("cpu" -> numpy, "cuda" -> cupy); the same object when it is there
    already."""
    a = to_backend(a, "array", "move")
    if device == "cuda":
        if is_cupy(a):
            return a
        import cupy

        return cupy.ascontiguousarray(cupy.asarray(a))
    return to_host(a)


def assign(dst: Any, src: Any) -> None:
    """``dst[...] = src`` across devices (``src`` cast to ``dst``'s dtype)."""
    src = to_backend(src, "src", "assign")
    if is_cupy(dst):
        import cupy

        src = src if is_cupy(src) else cupy.asarray(np.asarray(src, dtype=dst.dtype))
        dst[...] = src.astype(dst.dtype, copy=False)
    else:
        dst[...] = np.asarray(to_host(src), dtype=dst.dtype)


def host_copy(a: Any) -> np.ndarray:
    """A fresh NumPy copy of ``a`` (``cupy.asnumpy`` for a cupy array)."""
    a = to_backend(a, "array", "host_copy")
    if is_cupy(a):
        import cupy

        return cupy.asnumpy(a)
    return np.array(a, copy=True)
