"""ONNX export (``model.export(path, format="onnx")``, ``fastcnn export``) and import
(``fastcnn.onnx.load_onnx``): every layer type and option combination, run in onnxruntime
against ``model.predict`` (max relative error <= 1e-5), the round trip fastcnn -> ONNX ->
fastcnn, a CNN exported by ``torch.onnx.export(..., dynamo=False)``, and the errors.

Max relative error: ``max |a - b| / max |b|`` (an elementwise ratio would blow up at zeros).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import fastcnn
from fastcnn import layers as L
from fastcnn.cli import main as cli_main
from fastcnn.models import seeds_cnn

TOL = 1e-5


@pytest.fixture(scope="module")
def onnx() -> Any:
    return pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def ort() -> Any:
    return pytest.importorskip("onnxruntime")


def _max_rel(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def _run(ort: Any, proto: Any, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in sess.get_inputs()]
    return sess.run(None, {name: x})[0]


def _check(ort: Any, model: fastcnn.Sequential, x: np.ndarray, opset: int = 17) -> Any:
    """Export ``model``, check the ONNX graph in onnxruntime and its re-import against
    ``model.predict``; returns the ModelProto."""
    from fastcnn.onnx import load_onnx, to_onnx

    proto = to_onnx(model, opset=opset)
    want = model.predict(x, verbose=0)
    assert _max_rel(_run(ort, proto, x), want) <= TOL
    back = load_onnx(proto)
    assert back.input_shape == model.input_shape
    assert _max_rel(back.predict(x, verbose=0), want) <= TOL
    return proto


def _randomise(model: fastcnn.Sequential, rng: np.random.Generator) -> None:
    """Random weights everywhere (biases too: the initialisers give zero biases)."""
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.5
                       for w in model.get_weights()])


# --------------------------------------------------------------------------------------------
# export: every layer and option


CONV_CASES = list(itertools.product(
    [3, (2, 3)],                      # kernel_size (an even kernel: asymmetric "same" pads)
    [1, 2],                           # strides
    ["valid", "same", 1, (1, 2)],     # padding
    [1, 2],                           # dilation_rate
    [1, 2],                           # groups
    [True, False],                    # use_bias
    [None, "relu", "sigmoid", "softmax"],
))


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "groups", "bias", "act"),
                         CONV_CASES)
def test_conv2d_every_option(onnx: Any, ort: Any, rng: np.random.Generator, kernel: Any,
                             stride: int, padding: Any, dilation: int, groups: int, bias: bool,
                             act: str | None) -> None:
    model = fastcnn.Sequential([L.Conv2D(4, kernel, strides=stride, padding=padding,
                                         dilation_rate=dilation, groups=groups,
                                         activation=act, use_bias=bias)],
                               input_shape=(4, 9, 8), seed=1)
    _randomise(model, rng)
    x = rng.standard_normal((3, 4, 9, 8)).astype(np.float32)
    proto = _check(ort, model, x)
    conv = proto.graph.node[0]
    assert conv.op_type == "Conv" and len(conv.input) == (3 if bias else 2)
    ops = [n.op_type for n in proto.graph.node]
    assert ops == ["Conv"] + ({"relu": ["Relu"], "sigmoid": ["Sigmoid"],
                               "softmax": ["Softmax"]}.get(act, []))  # type: ignore[arg-type]


def test_conv2d_pads_are_in_onnx_order(onnx: Any) -> None:
    from fastcnn.onnx import to_onnx

    # "same" with a (2, 3) kernel, stride 1 on 9 x 8: H total 1 (0 top, 1 bottom), W total 2
    model = fastcnn.Sequential([L.Conv2D(2, (2, 3), padding="same")], input_shape=(1, 9, 8))
    (conv,) = to_onnx(model).graph.node
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
    assert list(attrs["pads"]) == [0, 1, 1, 1]  # [top, left, bottom, right]
    model = fastcnn.Sequential([L.Conv2D(2, 3, padding=(1, 2))], input_shape=(1, 9, 8))
    (conv,) = to_onnx(model).graph.node
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
    assert list(attrs["pads"]) == [1, 2, 1, 2]


@pytest.mark.parametrize(("pool", "stride", "padding"), list(itertools.product(
    [1, 2, 3, (2, 3)], [None, 1, 2, (1, 2)], ["valid", "same"])))
def test_maxpool2d_every_option(onnx: Any, ort: Any, rng: np.random.Generator, pool: Any,
                                stride: Any, padding: str) -> None:
    model = fastcnn.Sequential([L.MaxPool2D(pool, strides=stride, padding=padding)],
                               input_shape=(3, 7, 8))
    # all negative: a zero padding (instead of -inf) would show in the output
    x = rng.standard_normal((2, 3, 7, 8)).astype(np.float32) - 10
    _check(ort, model, x)


def test_maxpool2d_explicit_inf_padding_case(onnx: Any, ort: Any,
                                             rng: np.random.Generator) -> None:
    layer = L.MaxPool2D(2, strides=1, padding="same")
    model = fastcnn.Sequential([layer], input_shape=(2, 5, 6))
    assert layer._explicit_pad is not None  # the case fastcnn pads with -inf itself
    x = -np.abs(rng.standard_normal((2, 2, 5, 6))).astype(np.float32) - 1
    _check(ort, model, x)


@pytest.mark.parametrize(("act", "bias"), list(itertools.product(
    [None, "relu", "sigmoid", "softmax"], [True, False])))
def test_dense_every_option(onnx: Any, ort: Any, rng: np.random.Generator, act: str | None,
                            bias: bool) -> None:
    model = fastcnn.Sequential([L.Dense(7, activation=act, use_bias=bias)], input_shape=(12,))
    _randomise(model, rng)
    proto = _check(ort, model, rng.standard_normal((5, 12)).astype(np.float32))
    assert proto.graph.node[0].op_type == "Gemm"


@pytest.mark.parametrize("layer", [L.ReLU, L.Softmax, lambda: L.Activation("sigmoid"),
                                   lambda: L.Activation(None), lambda: L.Dropout(0.3),
                                   L.Flatten])
@pytest.mark.parametrize("shape", [(3, 4, 5), (6,)])
def test_shape_keeping_layers(onnx: Any, ort: Any, rng: np.random.Generator, layer: Any,
                              shape: tuple[int, ...]) -> None:
    model = fastcnn.Sequential([layer()], input_shape=shape)
    _check(ort, model, rng.standard_normal((4, *shape)).astype(np.float32))


def test_dropout_is_dropped(onnx: Any, ort: Any, rng: np.random.Generator) -> None:
    from fastcnn.onnx import to_onnx

    model = fastcnn.Sequential([L.Flatten(), L.Dropout(0.5), L.Dense(3)], input_shape=(2, 3, 3))
    assert [n.op_type for n in to_onnx(model).graph.node] == ["Flatten", "Gemm"]
    _check(ort, model, rng.standard_normal((4, 2, 3, 3)).astype(np.float32))


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_seeds_cnn_dynamic_batch_and_checker(onnx: Any, ort: Any, rng: np.random.Generator,
                                             padding: str) -> None:
    from fastcnn.onnx import to_onnx

    model = seeds_cnn((1, 12, 11), 10, seed=3, padding=padding)
    _randomise(model, rng)
    proto = to_onnx(model)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 12, 11]
    for n in (1, 7):
        x = rng.standard_normal((n, 1, 12, 11)).astype(np.float32)
        assert _max_rel(_run(ort, proto, x), model.predict(x, verbose=0)) <= TOL


def test_export_to_a_file_and_newer_opset(onnx: Any, ort: Any, rng: np.random.Generator,
                                          tmp_path: Any) -> None:
    from fastcnn.onnx import load_onnx

    model = seeds_cnn((1, 8, 8), 10, seed=0, padding="same")
    path = tmp_path / "m.onnx"
    model.export(path)  # format="onnx" by default
    model.export(tmp_path / "m21.onnx", format="onnx", opset=21)
    x = rng.standard_normal((5, 1, 8, 8)).astype(np.float32)
    for p, opset in ((path, 17), (tmp_path / "m21.onnx", 21)):
        proto = onnx.load(p)
        assert proto.opset_import[0].version == opset
        assert _max_rel(_run(ort, proto, x), model.predict(x, verbose=0)) <= TOL
        assert _max_rel(load_onnx(p).predict(x, verbose=0), model.predict(x, verbose=0)) <= TOL
    assert sorted(q.name for q in tmp_path.iterdir()) == ["m.onnx", "m21.onnx"]  # no tmp left


def test_export_errors(onnx: Any, tmp_path: Any) -> None:
    model = seeds_cnn((1, 8, 8), 10)
    with pytest.raises(ValueError, match=r"format must be one of \['onnx'\], got 'tf_saved"):
        model.export(tmp_path / "m", format="tf_saved_model")
    for bad in (16, 99, "17", True):
        with pytest.raises(ValueError, match="opset must be an int from 17"):
            model.export(tmp_path / "m.onnx", opset=bad)
    with pytest.raises(ValueError, match="not built"):
        fastcnn.Sequential([L.Dense(2)]).export(tmp_path / "m.onnx")

    class Custom(L.Layer):
        pass

    with pytest.raises(ValueError, match="no ONNX translation for layer Custom"):
        fastcnn.Sequential([Custom()], input_shape=(3,)).export(tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# the CLI


def test_cli_export(onnx: Any, ort: Any, tmp_path: Any, capsys: Any,
                    rng: np.random.Generator) -> None:
    model = seeds_cnn((1, 8, 8), 10, seed=0, padding="same")
    model.save(tmp_path / "m.npz")
    assert cli_main(["export", str(tmp_path / "m.npz"), str(tmp_path / "m.onnx")]) == 0
    assert "exported" in capsys.readouterr().out
    x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    proto = onnx.load(tmp_path / "m.onnx")
    assert _max_rel(_run(ort, proto, x), model.predict(x, verbose=0)) <= TOL


@pytest.mark.parametrize(("args", "message"), [
    (["missing.npz", "out.onnx"], "No such file"),
    (["m.npz", "out.onnx", "--opset", "12"], "opset must be an int from 17"),
])
def test_cli_export_errors(onnx: Any, tmp_path: Any, capsys: Any, monkeypatch: Any,
                           args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    seeds_cnn((1, 8, 8), 10).save("m.npz")
    assert cli_main(["export", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastcnn: error:") and message in err and err.count("\n") == 1


# --------------------------------------------------------------------------------------------
# without onnx


def test_importing_fastcnn_does_not_import_onnx() -> None:
    code = ("import sys, fastcnn, fastcnn.onnx; fastcnn.Sequential; "
            "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules, "
            "sorted(m for m in sys.modules if 'onnx' in m)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_onnx_an_import_error_names_the_extra(monkeypatch: Any, tmp_path: Any,
                                                      capsys: Any) -> None:
    from fastcnn.onnx import load_onnx

    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    with pytest.raises(ImportError, match=r'pip install "fastcnn\[onnx\]"'):
        load_onnx(tmp_path / "m.onnx")
    model = seeds_cnn((1, 8, 8), 10)
    with pytest.raises(ImportError, match=r'pip install "fastcnn\[onnx\]"'):
        model.export(tmp_path / "m.onnx")
    model.save(tmp_path / "m.npz")
    assert cli_main(["export", str(tmp_path / "m.npz"), str(tmp_path / "m.onnx")]) == 2
    assert 'pip install "fastcnn[onnx]"' in capsys.readouterr().err
