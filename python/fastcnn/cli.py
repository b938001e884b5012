"""The ``fastcnn`` command: ``info``, ``train``, ``predict``, ``export`` and ``bench``.

``fastcnn train`` with no arguments trains the seeds' CNN (Conv2D 32 -> Conv2D 64 -> MaxPool2D ->
Flatten -> Dense 128 -> Dense softmax) on the bundled 8x8 digits and reports test accuracy;
``fastcnn train --data DIR`` trains :data:`DATA_MODEL` (``vgg_bn``: global average pooling,
so its size does not grow with ``--target-size``) on an image folder (one sub-folder per class);
``--model NAME`` picks another from :data:`fastcnn.models.MODELS`; the summary names the model
and its parameter count. ``--out FILE --no-optimizer`` saves without the optimizer state.
``fastcnn predict MODEL PATH...`` classifies image files, folders and .npy / .npz arrays
(:mod:`fastcnn.cli_predict`, ``--csv FILE``, ``--data-format`` of the arrays). Errors in
arguments or data print one line and exit with status 2, without a traceback.
``python -m fastcnn ...`` is the same command; ``fastcnn --version`` prints the version.

Output: progress bars on a terminal; when stdout is not a terminal (a pipe, a file, CI) ``train``
prints one line per epoch instead (Keras' ``verbose=2``). Warnings raised during the command
(e.g. an unreadable image) print as one line, ``warning: <message>``, on stderr. Ctrl-C during
``train`` stops after the current batch: the summary gives the epochs actually trained, the
model is still evaluated and saved (``--out``), and the exit status is 130.

``train --plot PNG`` draws the training curves and ``train --report DIR`` writes history.png,
confusion.png and mistakes.png of the held-out images (``fastcnn.plot``; matplotlib, the
``plot`` extra). Whatever would fail after training (matplotlib missing, an output path that
can't be written) is checked before training starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .cli_io import writable_dir, writable_file

__all__ = ["DATA_MODEL", "main"]

#: ``fastcnn train --data``'s default ``--model``: its global average pooling head keeps the
#: parameter count (288,610 for RGB and 2 classes) independent of ``--target-size``.
DATA_MODEL = "vgg_bn"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastcnn", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True,
                           metavar="{info,train,predict,export,bench}")

    sub.add_parser("info", help="print the build: version, CPU ISA, threads, CUDA")

    t = sub.add_parser("train", help="train a CNN (the seeds' CNN by default, --model) on the "
                                      "bundled digits, or --data DIR")
    t.add_argument("--data", metavar="DIR", help="image folder with one sub-folder per class")
    t.add_argument("--model", default=None, metavar="NAME",
                   help=f"the network: seeds_cnn (the default on the digits), {DATA_MODEL} "
                        "(the default with --data: batch-normalised 3x3 convolutions, global "
                        "average pooling, ~0.29M parameters whatever the image size), "
                        "resnet20, resnet32, resnet44, resnet56 or resnet110 (the CIFAR "
                        "ResNets)")
    t.add_argument("--target-size", nargs=2, type=int, metavar=("H", "W"), default=(64, 64),
                   help="resize images to H x W (with --data; default 64 64)")
    t.add_argument("--color-mode", choices=("rgb", "grayscale", "rgba"), default="rgb",
                   help="with --data (default rgb)")
    t.add_argument("--epochs", type=int, default=None,
                   help="training epochs (default 20 on digits, 10 with --data)")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's learning rate")
    t.add_argument("--augment", action="store_true",
                   help="random flips, rotations and zooms (with --data)")
    t.add_argument("--validation-split", type=float, default=0.1,
                   help="fraction held out for validation (default 0.1)")
    t.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    t.add_argument("--threads", type=int, default=None, help="CPU threads for the kernels")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", metavar="MODEL", help="save the trained model (.npz)")
    t.add_argument("--no-optimizer", action="store_true",
                   help="with --out: save without the optimizer state (a smaller file; "
                        "training it further starts the optimizer afresh)")
    t.add_argument("--plot", metavar="PNG",
                   help='save the loss and accuracy curves (needs matplotlib: '
                        'pip install "fastcnn[plot]")')
    t.add_argument("--report", metavar="DIR",
                   help="write history.png, confusion.png and mistakes.png of the held-out "
                        "images (the test set, or with --data the validation split) into DIR")
    t.add_argument("--quiet", action="store_true", help="no summary or progress bars")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over the ranks of `mpiexec -n N fastcnn train "
                        "--distributed` (MPI; NCCL with --device cuda); --batch-size is the "
                        "global batch; rank 0 prints and writes the files")

    from . import cli_predict

    cli_predict.add_arguments(sub.add_parser(
        "predict", help="classify image files, folders and .npy / .npz arrays with a saved "
                        "model",
        description="Classify image files, folders (searched recursively) and .npy / .npz "
                    "arrays of images (rows named PATH[i]) with a saved model; unreadable "
                    "images are skipped with a warning."))

    ex = sub.add_parser("export", help="write a saved model as an ONNX graph")
    ex.add_argument("model", metavar="MODEL", help="a model saved by `fastcnn train --out`")
    ex.add_argument("output", metavar="OUTPUT", help="the .onnx file to write")
    ex.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")

    from . import bench

    bench.add_arguments(sub.add_parser(
        "bench", help="benchmark the kernels against NumPy and PyTorch",
        description=(bench.__doc__ or "").splitlines()[0]))
    return p


def _cmd_info() -> int:
    from . import info

    for k, v in info().items():
        print(f"{k}: {(' '.join(v) or 'none') if isinstance(v, list) else v}")
    return 0


def _check_outputs(a: argparse.Namespace) -> None:
    """Everything that would fail after training, checked before it starts."""
    if a.plot or a.report:
        from . import plot

        try:
            plot.require_matplotlib("--report" if a.report else "--plot")
        except ImportError as e:  # one line and status 2, like the other errors
            raise ValueError(str(e)) from None
    if a.report and a.data is not None and not a.validation_split > 0:
        raise ValueError("--report draws the held-out images: with --data it needs "
                         f"--validation-split > 0, got {a.validation_split}")
    if a.report:  # first: --out and --plot may name files inside it
        if os.path.exists(a.report) and not os.path.isdir(a.report):
            raise ValueError(f"--report {a.report}: is a file; give a folder")
        writable_dir(a.report, "--report", a.report, create=True)
    if a.out:
        writable_file(a.out, "--out")
    if a.plot:
        writable_file(a.plot, "--plot")


def _held_out(model: Any, test: tuple[Any, ...] | None, val: Any,
              keep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels (N,) and outputs (N, K) of the held-out images, then the images, labels and
    outputs of the ``keep`` most confident mistakes (batch by batch: a large folder is never
    held in memory at once)."""
    batches = [(test[0], test[1])] if test is not None else val
    ys, ps, mx, my, mp = [], [], [], [], []
    for xb, yb in batches:
        pb = model.predict(xb, batch_size=256)
        yb = np.asarray(yb).reshape(-1).astype(np.int64)
        ys.append(yb)
        ps.append(pb)
        wrong = np.argmax(pb, axis=1) != yb
        mx.append(np.asarray(xb)[wrong])
        my.append(yb[wrong])
        mp.append(pb[wrong])
        if sum(len(m) for m in my) > keep:  # keep only the most confident so far
            x_, y_, p_ = np.concatenate(mx), np.concatenate(my), np.concatenate(mp)
            top = np.argsort(-p_.max(axis=1), kind="stable")[:keep]
            mx, my, mp = [x_[top]], [y_[top]], [p_[top]]
    if not ys or not sum(len(v) for v in ys):
        raise ValueError("--report: there are no held-out images to draw")
    return (np.concatenate(ys), np.concatenate(ps),
            np.concatenate(mx), np.concatenate(my), np.concatenate(mp))


def _report(model: Any, history: Any, test: tuple[Any, ...] | None, val: Any,
            classes: list[str], folder: str) -> None:
    from . import plot

    files = ["history.png"] if history.epoch else []
    if history.epoch:
        plot.history(history, os.path.join(folder, "history.png"))
    y, probs, mx, my, mp = _held_out(model, test, val, keep=25)
    plot.confusion_matrix(y, probs, class_names=classes,
                          path=os.path.join(folder, "confusion.png"))
    wrong = int((np.argmax(probs, axis=1) != y).sum())
    shown = f" (the {len(my)} most confident shown)" if 0 < len(my) < wrong else ""
    plot.mistakes(mx, my, mp, class_names=classes, max_images=25,
                  path=os.path.join(folder, "mistakes.png"),
                  title=(f"{wrong} of {len(y)} held-out images misclassified{shown}" if wrong
                         else f"no mistakes on the {len(y)} held-out images"))
    files += ["confusion.png", "mistakes.png"]
    print(f"saved the report to {folder}: {', '.join(files)} ({len(y)} held-out images, "
          f"{wrong} misclassified)")


def _build_for_images(name: str, shape: tuple[int, ...], classes: int, seed: int) -> Any:
    """``models.build`` for ``--data``, a model that can't take the images named by the fix."""
    from .models import build

    if name == "vgg_bn" and min(shape[1:]) < 8:
        raise ValueError(f"--model vgg_bn halves the images three times: --target-size must "
                         f"be at least 8 8, got {shape[1]} {shape[2]}; give a larger "
                         f"--target-size or --model resnet20 / seeds_cnn")
    try:
        return build(name, shape, classes, seed=seed)
    except ValueError as e:
        raise ValueError(f"--model {name} can't take {'x'.join(map(str, shape))} images "
                         f"(--target-size {shape[1]} {shape[2]}): {e}") from None


def _cmd_train(a: argparse.Namespace) -> int:
    from . import data, datasets, optimizers, set_num_threads
    from .models import MODELS, build

    if a.model is None:
        a.model = "seeds_cnn" if a.data is None else DATA_MODEL
    if a.model not in MODELS:
        raise ValueError(f"--model must be one of {', '.join(MODELS)}, got {a.model!r}")
    if a.no_optimizer and not a.out:
        raise ValueError("--no-optimizer goes with --out MODEL (it says what the saved file "
                         "leaves out)")

    if a.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {a.batch_size}")
    if a.epochs is not None and a.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {a.epochs}")
    _check_outputs(a)
    if a.distributed:  # one rank of `mpiexec -n N fastcnn train --distributed`
        from . import distributed

        distributed.init(device="cuda" if a.device == "cuda" else "cpu")
        if not distributed.is_main():  # rank 0 alone prints and writes the files
            sys.stdout = open(os.devnull, "w")
            a.out = a.plot = a.report = None
    if a.threads is not None:
        set_num_threads(a.threads)
    # progress bars only on a terminal: piped or redirected, one line per epoch
    verbose = 0 if a.quiet else (1 if _is_terminal(sys.stdout) else 2)
    meta: dict[str, Any]
    if a.data is None:
        (x, y), (x_test, y_test) = datasets.load_digits()
        classes = [str(i) for i in range(10)]
        # the seeds' CNN with "same" padding: the digits are only 8x8
        extra = {"padding": "same"} if a.model == "seeds_cnn" else {}
        model = build(a.model, x.shape[1:], 10, seed=a.seed, **extra)
        epochs = a.epochs or 20
        # the digits are scaled to [0, 1]: an 8-bit image read by `predict` maps the same way
        meta = {"class_names": classes, "color_mode": "grayscale", "target_size": [8, 8],
                "rescale": 1 / 255}
        fit_args: dict[str, Any] = {"x": x, "y": y, "batch_size": a.batch_size,
                                    "validation_split": a.validation_split}
        test: tuple[Any, ...] | None = (x_test, y_test)
        val: Any = None
    else:
        augment = ([data.RandomFlip("horizontal"), data.RandomRotation(0.1),
                    data.RandomZoom(0.1)] if a.augment else [])
        common = {"target_size": tuple(a.target_size), "color_mode": a.color_mode,
                  "class_mode": "sparse", "batch_size": a.batch_size, "seed": a.seed,
                  "rescale": 1 / 255}
        split = a.validation_split if a.validation_split > 0 else 0.0
        train = data.ImageFolder(a.data, augment=augment, shuffle=True,
                                 validation_split=split, subset="training" if split else None,
                                 **common)
        if len(train.class_indices) < 2:
            raise ValueError(f"{a.data}: found only one class sub-folder "
                             f"({next(iter(train.class_indices))!r}); training a classifier "
                             f"needs at least two (one sub-folder of images per class)")
        val = (data.ImageFolder(a.data, shuffle=False, validation_split=split,
                                subset="validation", **common) if split else None)
        classes = sorted(train.class_indices, key=train.class_indices.__getitem__)
        channels = {"rgb": 3, "grayscale": 1, "rgba": 4}[a.color_mode]
        model = _build_for_images(a.model, (channels, *a.target_size), len(classes), a.seed)
        epochs = a.epochs or 10
        meta = {"class_names": classes, "color_mode": a.color_mode,
                "target_size": list(a.target_size), "rescale": 1 / 255}
        fit_args = {"x": train, "validation_data": val}
        test = None
    model.metadata = meta
    model.to(a.device)
    model.compile(optimizer=optimizers.Adam(learning_rate=a.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if not a.quiet:
        model.summary()
        print(f"model: {a.model}, {model.count_params():,} parameters, input "
              f"{'x'.join(str(d) for d in model.input_shape)}, {len(classes)} classes")
    t0 = time.perf_counter()
    history = model.fit(epochs=epochs, verbose=verbose, seed=a.seed, **fit_args)
    elapsed = time.perf_counter() - t0
    hist = history.history
    done = len(history.epoch)  # the epochs actually completed (fewer after Ctrl-C)
    unit = "epoch" if (epochs if history.interrupted else done) == 1 else "epochs"
    line = (f"interrupted: trained {done} of {epochs} {unit} in {elapsed:.1f} s"
            if history.interrupted else f"trained {done} {unit} in {elapsed:.1f} s")
    if "val_accuracy" in hist:
        line += f"; validation accuracy {hist['val_accuracy'][-1]:.4f}"
    print(line)
    if test is not None:
        loss, acc = model.evaluate(*test, verbose=0)
        print(f"test accuracy {acc:.4f} (loss {loss:.4f}) on {len(test[0])} held-out images")
    if a.out:
        model.save(a.out, include_optimizer=not a.no_optimizer)
        print(f"saved the model to {a.out}"
              + (" (without the optimizer state)" if a.no_optimizer else ""))
    if a.plot:
        if history.epoch:
            from . import plot

            plot.history(history, a.plot)
            print(f"saved the training curves to {a.plot}")
        else:
            print(f"no epoch completed: {a.plot} not written")
    if a.report:
        _report(model, history, test, val, classes, a.report)
    return 130 if history.interrupted else 0


def _cmd_export(a: argparse.Namespace) -> int:
    from .saving import load_model

    model = load_model(a.model, compile=False)
    try:
        model.export(a.output, format="onnx", opset=a.opset)
    except ImportError as e:  # no onnx: one line and status 2, like the other errors
        raise ValueError(str(e)) from None
    shape = ", ".join(str(s) for s in model.input_shape or ())
    print(f"exported {a.model} to {a.output} (ONNX opset {a.opset}, input (N, {shape}))")
    return 0


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # a closed or detached stream
        return False


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str,
                      lineno: int, line: str | None = None) -> str:
    """``warnings.formatwarning`` for the command: ``warning: <message>``, no source line."""
    text = " ".join(str(message).split())
    return f"warning: {text}\n"


@contextlib.contextmanager
def _cli_warnings() -> Iterator[None]:
    """Warnings print as one readable line while the command runs; restored afterwards."""
    saved = warnings.formatwarning
    warnings.formatwarning = _one_line_warning  # type: ignore[assignment]
    try:
        yield
    finally:
        warnings.formatwarning = saved


def _add_version(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from . import __version__

    parser.add_argument("--version", action="version", version=f"fastcnn {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fastcnn`` console script (and of ``python -m fastcnn``); returns
    the exit status."""
    args = _add_version(_parser()).parse_args(argv)
    with _cli_warnings():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command == "info":
            return _cmd_info()
        if args.command == "train":
            return _cmd_train(args)
        if args.command == "export":
            return _cmd_export(args)
        if args.command == "bench":
            from . import bench

            return bench.run(args)
        from . import cli_predict

        return cli_predict.run(args)
    except KeyboardInterrupt:
        print("fastcnn: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, json.JSONDecodeError) as e:
        print(f"fastcnn: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
