"""Geometry of convolutions and poolings: the one copy in Python.

Pure Python on ints (no arrays). :mod:`fastcnn.ops`, :mod:`fastcnn.reference`, the layers, the
data pipeline and the CuPy benchmark reference all call these, so that they agree on what a
``stride=2`` or a ``padding="same"`` means and raise the same errors for bad values; the C++
twin is ``csrc/common/params.h`` (``conv_out_size`` / ``pool_out_size``).

One pad order everywhere: four pads are ``(top, left, bottom, right)``; one axis's two are
``(before, after)``.

* :func:`pair` turns ``int | (int, int)`` into ``(h, w)``, rejecting bools, floats and wrong
  lengths with a message that names the argument.
* :func:`split_margin` splits a total (padding, a crop's margin) into ``(before, after)``, the
  odd one after; :func:`same_padding` is one axis of TensorFlow's ``"same"``: output
  ``ceil(size / stride)`` for any stride, an odd total padding puts the extra row/column at the
  end.
* :func:`dilated_size` (the extent of a dilated kernel), :func:`span` (the input extent that
  ``count`` windows ``stride`` apart cover) and :func:`tap_slice` (the input rows or columns that
  one kernel tap reads for every output) are the building blocks of the sizes below and of the
  NumPy / CuPy references' im2col.
* :func:`conv_padding` resolves ``int | (h, w) | "valid" | "same"`` into
  ``(top, left, bottom, right)``.
* :func:`conv_output_size` and :func:`pool_output_size` mirror ``csrc/common/params.h``
  (the latter is PyTorch's ``pooling_output_shape``).
* :func:`pool_args` validates the four pooling geometry arguments at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._args import check_range, is_int, op_prefix

__all__ = [
    "conv_output_size",
    "conv_padding",
    "dilated_size",
    "pair",
    "pool_args",
    "pool_output_size",
    "same_padding",
    "span",
    "split_margin",
    "tap_slice",
]


def pair(
    v: Any, name: str, *, op: str | None = None, minimum: int | None = None
) -> tuple[int, int]:
    """Normalise ``int | (int, int)`` to ``(h, w)``.

    Args:
        v: an int (used for both axes) or a length-2 sequence of ints.
        name: the argument's name, used in error messages.
        op: optional op name prefixed to error messages (``"conv2d: stride must ..."``).
        minimum: when given, both values must be ``>= minimum``.

    Raises:
        TypeError: ``v`` is not an int / sequence of ints (bools and floats are rejected).
        ValueError: the sequence does not have length 2, or a value is below ``minimum``.
    """
    p = op_prefix(op)
    if is_int(v):
        out = (int(v), int(v))
    elif isinstance(v, Sequence) and not isinstance(v, str | bytes):
        if len(v) != 2:
            raise ValueError(f"{p}{name} must be an int or a pair (h, w), got {v!r} "
                             f"(length {len(v)})")
        if not (is_int(v[0]) and is_int(v[1])):
            raise TypeError(f"{p}{name} must be an int or a pair of ints (h, w), got {v!r}")
        out = (int(v[0]), int(v[1]))
    else:
        raise TypeError(f"{p}{name} must be an int or a pair of ints (h, w), got {v!r} "
                        f"({type(v).__name__})")
    if minimum is not None and min(out) < minimum:
        raise ValueError(f"{p}{name} must be >= {minimum}, got {v!r}")
    check_range(out, v, name, op)
    return out


def dilated_size(k: int, dilation: int = 1) -> int:
    """The extent of a kernel of ``k`` taps ``dilation`` apart: ``dilation * (k - 1) + 1``."""
    return dilation * (k - 1) + 1


def span(count: int, stride: int, k: int = 1, dilation: int = 1) -> int:
    """The input extent covered by ``count`` (>= 1) windows of a kernel ``k`` (dilated by
    ``dilation``) placed ``stride`` apart: ``(count - 1) * stride + dilated_size(k, dilation)``."""
    return (count - 1) * stride + dilated_size(k, dilation)


def tap_slice(start: int, stride: int, count: int) -> slice:
    """The ``count`` (>= 1) indices ``start, start + stride, ...`` as a slice: the rows (or
    columns) of the padded input that the kernel tap at offset ``start`` reads for each of
    ``count`` outputs."""
    return slice(start, start + span(count, stride), stride)


def split_margin(total: int) -> tuple[int, int]:
    """``total`` split into ``(before, after)``, the odd one after (TensorFlow's rule for "same"
    padding, and a centre crop's margins)."""
    return total // 2, total - total // 2


def same_padding(size: int, k: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's (and Keras') "same" padding along one axis: ``(before, after)`` such that
    the output has ``ceil(size / stride)`` elements; an odd total puts the extra one after.

    The total is ``max((ceil(size / stride) - 1) * stride + dilation * (k - 1) + 1 - size, 0)``.
    """
    out = -(-size // stride)
    return split_margin(max(span(out, stride, k, dilation) - size, 0))


def conv_padding(
    padding: Any,
    H: int,
    W: int,
    R: int,
    S: int,
    stride: Any = 1,
    dilation: Any = 1,
    *,
    op: str = "conv2d",
) -> tuple[int, int, int, int]:
    """Resolve a convolution ``padding`` argument into ``(top, left, bottom, right)``.

    Args:
        padding: ``int``, ``(h, w)`` (symmetric), ``"valid"`` (no padding) or ``"same"``
            (output ``ceil(H / stride_h)`` x ``ceil(W / stride_w)`` for any stride; total padding
            ``max((P - 1) * stride + dilation * (R - 1) + 1 - H, 0)``, the odd extra row/column at
            the bottom/right, as TensorFlow does).
        H, W: input height and width.
        R, S: kernel height and width.
        stride, dilation: int or ``(h, w)``, each >= 1.
        op: op name used in error messages.

    Raises:
        TypeError / ValueError: naming ``padding`` (or ``stride`` / ``dilation``).
    """
    sh, sw = pair(stride, "stride", op=op, minimum=1)
    dh, dw = pair(dilation, "dilation", op=op, minimum=1)
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            top, bottom = same_padding(int(H), int(R), sh, dh)
            left, right = same_padding(int(W), int(S), sw, dw)
            return (top, left, bottom, right)
        raise ValueError(f"{op}: padding must be an int, a pair (h, w), 'valid' or 'same', "
                         f"got {padding!r}")
    ph, pw = pair(padding, "padding", op=op, minimum=0)
    return (ph, pw, ph, pw)


def _conv_out_1d(size: int, k: int, stride: int, pad0: int, pad1: int, dil: int,
                 axis: str, op: str) -> int:
    eff = dilated_size(k, dil)
    padded = size + pad0 + pad1
    if eff > padded:
        raise ValueError(f"{op}: the dilated kernel ({eff} along {axis}) is larger than the "
                         f"padded input ({size} + {pad0} + {pad1} = {padded})")
    return (padded - eff) // stride + 1


def conv_output_size(
    H: int,
    W: int,
    R: int,
    S: int,
    stride: Any,
    padding: tuple[int, int, int, int],
    dilation: Any,
    *,
    op: str = "conv2d",
) -> tuple[int, int]:
    """Output size ``(P, Q)`` of a convolution.

    ``P = (H + top + bottom - dilation_h * (R - 1) - 1) // stride_h + 1`` and likewise for ``Q``.

    Args:
        H, W: input size; R, S: kernel size.
        stride, dilation: int or ``(h, w)``.
        padding: ``(top, left, bottom, right)`` as returned by :func:`conv_padding`.

    Raises:
        ValueError: the dilated kernel does not fit in the padded input.
    """
    sh, sw = pair(stride, "stride", op=op, minimum=1)
    dh, dw = pair(dilation, "dilation", op=op, minimum=1)
    top, left, bottom, right = padding
    return (_conv_out_1d(H, R, sh, top, bottom, dh, "H", op),
            _conv_out_1d(W, S, sw, left, right, dw, "W", op))


def pool_args(
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    *,
    op: str = "max_pool2d",
    names: tuple[str, str, str, str] = ("kernel_size", "stride", "padding", "dilation"),
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Validate pooling geometry: returns ``(kernel, stride, padding, dilation)`` as pairs.

    ``stride=None`` means ``kernel_size``. Kernel, stride and dilation must be >= 1, padding >= 0
    and at most half the kernel (``padding <= kernel // 2``, PyTorch's rule). ``names``: the four
    arguments' names in error messages (``conv2d_backward`` calls them ``pool_size``, ...).
    """
    kn, sn, pn, dn = names
    k = pair(kernel_size, kn, op=op, minimum=1)
    s = k if stride is None else pair(stride, sn, op=op, minimum=1)
    p = pair(padding, pn, op=op, minimum=0)
    d = pair(dilation, dn, op=op, minimum=1)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{op}: {pn} {p} must be at most half the {kn} {k} "
                         f"({pn} <= {kn} // 2)")
    return k, s, p, d


def _pool_out_1d(size: int, k: int, stride: int, pad: int, dil: int, ceil_mode: bool,
                 axis: str, op: str) -> int:
    eff = dilated_size(k, dil)
    room = size + 2 * pad - eff
    if room < 0:
        raise ValueError(f"{op}: the dilated window ({eff} along {axis}) is larger than the "
                         f"padded input ({size} + 2*{pad} = {size + 2 * pad})")
    out = (room + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:  # the last window must start inside
        out -= 1
    # With dilation > 1 a window's taps can step over the whole input (PyTorch then returns
    # -inf with an out-of-range index); such a geometry is rejected. Without dilation every
    # window holds an input element (padding <= k // 2 and the ceil_mode rule guarantee it).
    for o in range(out if dil > 1 else 0):
        start = o * stride - pad
        first = start if start >= 0 else start + (-start + dil - 1) // dil * dil
        if first >= size or first > start + (k - 1) * dil:
            raise ValueError(f"{op}: pooling window {o} along {axis} covers no input element "
                             f"(size {size}, kernel {k}, stride {stride}, padding {pad}, "
                             f"dilation {dil})")
    return out


def pool_output_size(
    H: int,
    W: int,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool = False,
    *,
    op: str = "max_pool2d",
) -> tuple[int, int]:
    """Output size ``(P, Q)`` of a pooling op (PyTorch's ``pooling_output_shape``).

    ``P = (H + 2 * pad - dilation * (k - 1) - 1 [+ stride - 1 if ceil_mode]) // stride + 1``; with
    ``ceil_mode`` the last window must start inside the input or the left padding, otherwise it
    is dropped. Arguments are validated as in :func:`pool_args`.

    Raises:
        ValueError: ``H`` or ``W`` < 1, the dilated window is larger than the padded input, or a
            window (possible only with dilation > 1) contains no input element.
    """
    k, s, p, d = pool_args(kernel_size, stride, padding, dilation, op=op)
    if H < 1 or W < 1:
        raise ValueError(f"{op}: input height and width must be >= 1, got H={H}, W={W}")
    return (_pool_out_1d(H, k[0], s[0], p[0], d[0], ceil_mode, "H", op),
            _pool_out_1d(W, k[1], s[1], p[1], d[1], ceil_mode, "W", op))
