"""Errors that point at the fix (issue 19): a channels-last or channel-less input says how to
lay it out, shape errors quote the user's array, and a model file name of another format is
refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import fastcnn as fc
from fastcnn import layers as L


def _model(input_shape: tuple[int, ...] | None = None) -> fc.Sequential:
    m = fc.Sequential([L.Conv2D(4, 3), L.Flatten(), L.Dense(2, activation="softmax")],
                      input_shape=input_shape, seed=0)
    m.compile("sgd", "sparse_categorical_crossentropy")
    return m


def test_a_channels_last_input_shape_names_the_channels_first_one() -> None:
    with pytest.raises(ValueError, match=r"looks channels-last.*input_shape=\(1, 16, 16\).*"
                                         r"transpose\(0, 3, 1, 2\)"):
        _model((16, 16, 1))


def test_fit_on_channels_last_arrays_says_to_transpose() -> None:
    y = np.zeros(8, np.int64)
    with pytest.raises(ValueError, match=r"channels-last.*transpose\(0, 3, 1, 2\)"):
        # built from the data, (16, 16, 1) can't be convolved: the hint comes from build
        _model().fit(np.zeros((8, 16, 16, 1), np.float32), y, verbose=0)
    with pytest.raises(ValueError, match=r"got \(N, 16, 16, 3\).*channels-last.*transpose"):
        _model((3, 16, 16)).fit(np.zeros((8, 16, 16, 3), np.float32), y, verbose=0)


def test_images_without_a_channel_axis_quote_the_users_shape_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"got \(N, 16, 16\)\. The images have no channel "
                                         r"axis: add one with x\[:, None\]"):
        _model((1, 16, 16)).fit(np.zeros((64, 16, 16), np.float32), np.zeros(64, np.int64),
                                verbose=0)


def test_a_plain_mismatch_has_no_hint() -> None:
    with pytest.raises(ValueError, match=r"got \(N, 2, 16, 16\)$"):
        _model((1, 16, 16)).predict(np.zeros((4, 2, 16, 16), np.float32))


@pytest.mark.parametrize("name", ["m.keras", "m.h5", "m.HDF5", "m.pt", "m.pth", "m.onnx"])
def test_save_refuses_other_formats_before_writing(tmp_path: Path, name: str) -> None:
    model = _model((1, 8, 8))
    with pytest.raises(ValueError, match=r"does not write; it writes \.npz"):
        model.save(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_save_weights_takes_npz_and_safetensors_names_only(tmp_path: Path) -> None:
    model = _model((1, 8, 8))
    with pytest.raises(ValueError, match=r"save_weights.*\.npz or \.safetensors"):
        model.save_weights(tmp_path / "w.keras")
    with pytest.raises(ValueError, match=r"model\.export\(path\) writes ONNX"):
        model.save_weights(tmp_path / "w.onnx")
    assert list(tmp_path.iterdir()) == []
    model.save(tmp_path / "model")  # no suffix: an .npz exactly at that path, as before
    model.save_weights(tmp_path / "w.weights")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "w.weights"]
