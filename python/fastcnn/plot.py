"""Pictures of a training run: the curves per epoch, a confusion matrix, the worst mistakes.

``history(history)`` draws loss and metrics per epoch (training and validation of each metric on
one axis, the best epoch marked), ``confusion_matrix(y_true, y_pred_or_probs)`` the counts of
true against predicted classes, ``mistakes(x, y_true, probs)`` a grid of the misclassified
images, the model's most confident wrong answers first. Each returns a ``matplotlib.figure.Figure``
and saves it when given ``path=``.

matplotlib is optional (``pip install "fastcnn[plot]"``) and imported only when a picture is
drawn: ``import fastcnn`` never imports it. The figures are built with ``Figure`` and the Agg
canvas directly, not pyplot, so the user's backend and pyplot's figure list stay untouched.
This module takes a History (or its dict) and arrays; it imports nothing of the model or training.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .callbacks import resolve_mode

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["confusion_matrix", "history", "mistakes", "require_matplotlib"]

_EXTRA = 'pip install "fastcnn[plot]"'
_NOT_MONITORED = ("learning_rate", "lr")  # logged per epoch, but no "best" value
_MAX_CELL_TEXTS = 50  # classes; more and the numbers in the cells cannot be read
_TRAIN_COLOR, _VAL_COLOR, _BEST_COLOR = "#1f77b4", "#ff7f0e", "#2ca02c"


def require_matplotlib(feature: str = "fastcnn.plot") -> None:
    """Raise ImportError naming the ``plot`` extra when matplotlib can't be imported.

    ``feature`` names what needs it (e.g. ``"--report"``) in the message.
    """
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{feature} needs matplotlib, which is not installed ({e}): "
                          f"{_EXTRA}") from None


def _figure(feature: str, figsize: tuple[float, float]) -> Figure:
    require_matplotlib(feature)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas; no pyplot, no global backend
    return fig


def _save(fig: Figure, path: str | os.PathLike[str] | None, dpi: int) -> None:
    if path is not None:
        fig.savefig(os.fspath(path), dpi=dpi)


# ---------------------------------------------------------------------------------------------
# history


def _history_dict(history: Any) -> tuple[dict[str, np.ndarray], np.ndarray, bool]:
    """(key -> float curve, the epoch numbers shown (1-based), interrupted)."""
    raw = getattr(history, "history", history)
    if not isinstance(raw, Mapping):
        raise TypeError(f"history must be a History (what fit returns) or its dict "
                        f"{{'loss': [...], ...}}, got {type(history).__name__}")
    if not raw:
        raise ValueError("history is empty: no epoch was recorded (did fit run an epoch?)")
    curves: dict[str, np.ndarray] = {}
    for k, v in raw.items():
        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"history[{k!r}] must be a list of numbers, one per epoch, "
                             f"got {v!r:.80}") from None
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"history[{k!r}] must be a non-empty list of numbers, one per "
                             f"epoch, got shape {a.shape}")
        curves[str(k)] = a
    lengths = {k: a.size for k, a in curves.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"history: every key needs one value per epoch, got lengths {lengths}")
    n = next(iter(lengths.values()))
    epochs = np.arange(1, n + 1)
    ep = getattr(history, "epoch", None)
    if ep is not None and len(ep) == n:  # fit(initial_epoch=...) starts later
        epochs = np.asarray(ep, dtype=np.int64) + 1
    return curves, epochs, bool(getattr(history, "interrupted", False))


def _best(curve: np.ndarray, name: str) -> int | None:
    """Index of the best finite value (min for loss-like names, max for accuracy-like)."""
    finite = np.isfinite(curve)
    if not finite.any():
        return None
    masked = np.where(finite, curve, np.inf if resolve_mode("auto", name) == "min" else -np.inf)
    return int(np.argmin(masked) if resolve_mode("auto", name) == "min" else np.argmax(masked))


def history(history: Any, path: str | os.PathLike[str] | None = None, *,
            title: str | None = None, dpi: int = 120) -> Figure:
    """Loss and metrics per epoch: one axis per quantity with its training and validation curves.

    The best epoch of each quantity is marked (of the validation curve where there is one), as
    min for loss-like names and max for accuracy-like ones (``acc``, ``auc``, ``precision``,
    ``recall``, ``top_k``: the rule of ``EarlyStopping(mode="auto")``); the learning rate, when
    logged, gets an axis without a mark.

    Args:
        history: what ``fit`` returns (a ``fastcnn.callbacks.History``), or its ``.history``
            dict ``{"loss": [...], "val_loss": [...], "accuracy": [...], ...}``, one number per
            epoch for every key.
        path: where to save the picture (PNG, or any format matplotlib knows by the suffix).
        title: a title over the axes (default: "Training history", noting an interruption).
        dpi: resolution of the saved picture.

    Returns:
        The ``matplotlib.figure.Figure`` (one axis per quantity, x: epoch).
    """
    curves, epochs, interrupted = _history_dict(history)
    bases: list[str] = []
    for k in curves:
        b = k[4:] if k.startswith("val_") and len(k) > 4 else k
        if b not in bases:
            bases.append(b)
    bases.sort(key=lambda b: (b != "loss", b in _NOT_MONITORED))  # loss first, rate last
    cols = min(len(bases), 3)
    rows = math.ceil(len(bases) / cols)
    fig = _figure("fastcnn.plot.history", (4.6 * cols, 3.5 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, base in zip(axes, bases, strict=False):
        _history_axis(ax, base, curves, epochs)
    for ax in axes[len(bases):]:
        ax.set_visible(False)
    default = "Training history" + (" (interrupted)" if interrupted else "")
    fig.suptitle(title or default, fontsize=12)
    _save(fig, path, dpi)
    return fig


def _history_axis(ax: Axes, base: str, curves: dict[str, np.ndarray], epochs: np.ndarray) -> None:
    from matplotlib.ticker import MaxNLocator

    marker = "o" if epochs.size <= 30 else None
    drawn = [(name, color, label) for name, color, label in
             ((base, _TRAIN_COLOR, "training"), (f"val_{base}", _VAL_COLOR, "validation"))
             if name in curves]
    for name, color, label in drawn:
        ax.plot(epochs, curves[name], color=color, marker=marker, markersize=4, linewidth=1.8,
                label=label, gid=f"curve:{name}")
    if base not in _NOT_MONITORED:
        name = drawn[-1][0]  # the validation curve where there is one
        i = _best(curves[name], name)
        if i is not None:
            e, v = int(epochs[i]), float(curves[name][i])
            ax.axvline(e, color=_BEST_COLOR, linestyle="--", linewidth=1, alpha=0.7)
            ax.plot([e], [v], linestyle="none", marker="*", markersize=14, color=_BEST_COLOR,
                    markeredgecolor="white", zorder=5, gid=f"best:{name}",
                    label=f"best {name}: {v:.4g} (epoch {e})")
    elif np.all(curves[drawn[0][0]] > 0):
        lo, hi = curves[drawn[0][0]].min(), curves[drawn[0][0]].max()
        if hi / lo > 10:
            ax.set_yscale("log")
    ax.set_title(base.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel(base)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, framealpha=0.85)


# ---------------------------------------------------------------------------------------------
# labels and probabilities


def _labels(y: Any, name: str) -> np.ndarray:
    """Integer labels (N,) from labels (N,) or one-hot / probabilities (N, K)."""
    a = np.asarray(y)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim == 2:
        return np.argmax(a, axis=1)
    if a.ndim != 1:
        raise ValueError(f"{name} must be labels (N,) or one row per image (N, K), "
                         f"got shape {a.shape}")
    if a.size and not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.bool_)):
        if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)) \
                or np.any(a != np.round(a)):
            raise ValueError(f"{name} must hold integer class labels, got dtype {a.dtype} "
                             f"with non-integer values (probabilities need shape (N, K))")
    a = a.astype(np.int64)
    if a.size and a.min() < 0:
        raise ValueError(f"{name} must hold class labels >= 0, got {int(a.min())}")
    return a


def _probabilities(probs: Any, name: str) -> np.ndarray:
    """(N, K) scores; one sigmoid column (N, 1) becomes the two classes [1 - p, p]."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 1:
        if p.size and not (np.all(p >= 0) and np.all(p <= 1)):
            raise ValueError(f"{name} with one column must hold sigmoid probabilities in "
                             f"[0, 1], got values in [{p.min():.4g}, {p.max():.4g}] (labels "
                             f"go in shape (N,))")
        p = np.concatenate([1 - p, p], axis=1)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"{name} must be the model's outputs (N, K) with K >= 2 classes "
                         f"(or one sigmoid column (N, 1)), got shape {np.shape(probs)}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return p


def _num_classes(k_seen: int, k_probs: int | None, class_names: Sequence[str] | None) -> int:
    if class_names is not None:
        if isinstance(class_names, str):
            raise TypeError("class_names must be a list of names, one per class, got a str")
        k = len(class_names)
        if k_probs is not None and k_probs != k:
            raise ValueError(f"class_names has {k} names but the predictions have {k_probs} "
                             f"classes (columns); pass one name per class")
        if k_seen > k:
            raise ValueError(f"class_names has {k} names but the labels go up to {k_seen - 1}; "
                             f"pass one name per class")
        return k
    return max(k_seen, k_probs or 0, 2)


def _same_length(n: int, other: np.ndarray, name: str) -> None:
    if other.shape[0] != n:
        raise ValueError(f"{name} has {other.shape[0]} rows, y_true has {n}: they must hold "
                         f"the same images, in the same order")


# ---------------------------------------------------------------------------------------------
# confusion matrix


def confusion_matrix(y_true: Any, y_pred_or_probs: Any, class_names: Sequence[str] | None = None,
                     normalize: str | None = None, path: str | os.PathLike[str] | None = None,
                     *, title: str | None = None, dpi: int = 120) -> Figure:
    """The counts of each true class (rows) predicted as each class (columns).

    Args:
        y_true: labels (N,) ints in [0, K), or one-hot (N, K).
        y_pred_or_probs: predicted labels (N,), or the model's outputs (N, K) (the argmax is
            the prediction; one sigmoid column (N, 1) is two classes at 0.5).
        class_names: K names for the ticks (default: the class numbers).
        normalize: ``None`` (counts), ``"true"`` (each row sums to 1: recall per class),
            ``"pred"`` (each column sums to 1: precision), ``"all"`` (the whole sums to 1).
        path: where to save the picture.
        title: default "Confusion matrix" with the accuracy.
        dpi: resolution of the saved picture.

    Returns:
        The Figure; its first axis shows the (K, K) matrix as an image (``ax.images[0]``) with
        one text per cell (the count, or the fraction with ``normalize``; up to 50 classes,
        more are shown by colour only).
    """
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
    t = _labels(y_true, "y_true")
    raw = np.asarray(y_pred_or_probs)
    k_probs = None
    if raw.ndim == 2:
        raw = _probabilities(raw, "y_pred_or_probs")
        k_probs = raw.shape[1]
    p = _labels(raw, "y_pred_or_probs")
    _same_length(t.shape[0], p, "y_pred_or_probs")
    if t.size == 0:
        raise ValueError("y_true is empty: a confusion matrix needs at least one image")
    k = _num_classes(int(max(t.max(), p.max())) + 1, k_probs, class_names)
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in
                                                                               range(k)]
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (t, p), 1)
    shown = counts.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if normalize == "true":
            shown = np.nan_to_num(shown / counts.sum(axis=1, keepdims=True))
        elif normalize == "pred":
            shown = np.nan_to_num(shown / counts.sum(axis=0, keepdims=True))
        elif normalize == "all":
            shown = shown / counts.sum()
    side = min(max(4.2, 0.42 * k + 2.4), 16.0)
    fig = _figure("fastcnn.plot.confusion_matrix", (side + 1.0, side))
    ax = fig.add_subplot()
    im = ax.imshow(shown, cmap="Blues", interpolation="nearest",
                   vmin=0, vmax=max(float(shown.max()), 1e-12))
    bar = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02,
                       label="count" if normalize is None else "fraction")
    if normalize is None:
        from matplotlib.ticker import MaxNLocator

        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    fontsize = float(np.clip(15 - 0.4 * k, 5.5, 11))
    longest = max(len(s) for s in names)
    rotate = longest * k > 45  # the names would run into each other
    ax.set_xticks(range(k), names, rotation=90 if rotate else 0, fontsize=min(10, fontsize + 2))
    ax.set_yticks(range(k), names, fontsize=min(10, fontsize + 2))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(np.arange(k + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(k + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1)
    ax.tick_params(which="minor", length=0)
    dark = 0.55 * shown.max()
    for i in range(k if k <= _MAX_CELL_TEXTS else 0):  # beyond that the colours tell it
        for j in range(k):
            v = shown[i, j]
            text = str(counts[i, j]) if normalize is None else f"{v:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                    color="white" if v > dark else "#222222",
                    alpha=0.35 if counts[i, j] == 0 else 1.0)
    right = int(np.trace(counts))
    how = {None: "", "true": ", normalized over true classes",
           "pred": ", normalized over predicted classes", "all": ", normalized over all"}
    ax.set_title(title or f"Confusion matrix{how[normalize]}\naccuracy {right / t.size:.4f} "
                          f"({right} of {t.size})", fontsize=11)
    _save(fig, path, dpi)
    return fig


# ---------------------------------------------------------------------------------------------
# mistakes


def _images(x: Any) -> np.ndarray:
    """(N, H, W, C) floats in [0, 1] for imshow, from NCHW in [0, 1] or [0, 255]."""
    a = np.asarray(x)
    if a.ndim != 4 or a.shape[1] not in (1, 3, 4):
        raise ValueError(f"x must be images (N, C, H, W) with C = 1 (grayscale), 3 (RGB) or 4 "
                         f"(RGBA) channels, got shape {a.shape}")
    a = a.astype(np.float64)
    if a.size and not np.all(np.isfinite(a)):
        raise ValueError("x holds NaN or infinite values")
    if a.size and (a.min() < -1e-3 or a.max() > 255 + 1e-3):
        raise ValueError(f"x must hold images in [0, 1] or [0, 255], got values in "
                         f"[{a.min():.4g}, {a.max():.4g}]; undo the normalisation first")
    if a.size and a.max() > 1 + 1e-3:
        a = a / 255.0
    return np.clip(a, 0, 1).transpose(0, 2, 3, 1)


def mistakes(x: Any, y_true: Any, probs: Any, class_names: Sequence[str] | None = None,
             max_images: int = 25, path: str | os.PathLike[str] | None = None, *,
             title: str | None = None, dpi: int = 120) -> Figure:
    """A grid of the misclassified images, the model's most confident wrong answers first.

    Each image is titled with the predicted class and its probability, and the true class.

    Args:
        x: images (N, C, H, W), C = 1 or 3 (4: RGBA), floats in [0, 1] or [0, 255] (uint8 too).
        y_true: labels (N,) ints in [0, K), or one-hot (N, K).
        probs: the model's outputs (N, K) (or one sigmoid column (N, 1)).
        class_names: K names (default: the class numbers).
        max_images: at most this many images (the most confident mistakes).
        path: where to save the picture.
        title: default "<m> of <N> images misclassified" (and how many are shown).
        dpi: resolution of the saved picture.

    Returns:
        The Figure: one axis per shown mistake, titled ``"pred <name> (<p>)\\ntrue <name>"``;
        with no mistakes, one empty axis saying so.
    """
    if isinstance(max_images, bool) or not isinstance(max_images, int | np.integer) \
            or max_images < 1:
        raise ValueError(f"max_images must be an int >= 1, got {max_images!r}")
    imgs = _images(x)
    t = _labels(y_true, "y_true")
    p = _probabilities(probs, "probs")
    _same_length(imgs.shape[0], t, "y_true")
    _same_length(imgs.shape[0], p, "probs")
    k = _num_classes(int(t.max()) + 1 if t.size else 0, p.shape[1], class_names)
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in
                                                                               range(k)]
    pred = np.argmax(p, axis=1)
    conf = p[np.arange(p.shape[0]), pred]
    wrong = np.flatnonzero(pred != t)
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:max_images]
    n = order.size
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    cell = 1.9 if n > 1 else 3.0
    fig = _figure("fastcnn.plot.mistakes", (max(cell * cols, 3.5), cell * rows + 0.7))
    head = title or (f"{wrong.size} of {t.size} images misclassified"
                     + (f" (the {n} most confident shown)" if n < wrong.size else "")
                     if wrong.size else f"no mistakes: all {t.size} images are right")
    fig.suptitle(head, fontsize=11)
    if n == 0:
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no misclassified images", ha="center", va="center", fontsize=11)
        _save(fig, path, dpi)
        return fig
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, i in zip(axes, order, strict=False):
        img = imgs[i]
        if img.shape[2] == 1:
            ax.imshow(img[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(img, interpolation="nearest")
        ax.set_title(f"pred {names[pred[i]]} ({conf[i]:.2f})\ntrue {names[t[i]]}",
                     fontsize=8, color="#b22222")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[n:]:
        fig.delaxes(ax)
    _save(fig, path, dpi)
    return fig
