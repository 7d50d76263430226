"""Engine adapters of the five networks (ichnode.infer.deep) on a small synthetic volume, on the CPU."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from structlog.testing import capture_logs

from ichnode.config import EngineConfig, load_config
from ichnode.domain import ALL_CLASSES, Findings
from ichnode.errors import ConfigError
from ichnode.infer import deep
from ichnode.infer.engine import InferenceEngine, build_models
from ichnode.models.dtvit import LOCATION_CLASSES
from ichnode.models.registry import get
from tests.infer.conftest import write_tiny_weights

CFG = EngineConfig(device="cpu", threads=1, batch_size=4)


def _check_common(f: Findings, volume) -> None:
    assert isinstance(f, Findings)
    assert f.labels.shape == volume.hu.shape and f.labels.dtype == np.uint8
    assert int(f.labels.max(initial=0)) <= len(f.segment_classes)
    assert all(c in ALL_CLASSES for c in f.segment_classes)
    if f.heatmap is not None:
        assert f.heatmap.shape == volume.hu.shape and f.heatmap.dtype == np.float32
        assert 0.0 <= float(f.heatmap.min()) and float(f.heatmap.max()) <= 1.0
    for key, p in f.probabilities.items():
        assert key == "any" or key in ALL_CLASSES
        assert 0.0 <= p <= 1.0


@pytest.mark.parametrize("name", ["resnet50_cls", "vgg_wso", "dtvit"])
def test_slice_classifiers(name, tiny_weights, volume) -> None:
    engine = deep.build_deep(name, CFG, tiny_weights)
    assert isinstance(engine, deep.SliceClassifierEngine) and engine.info.name == name
    result = engine.analyse_detailed(volume)
    f = result.findings
    _check_common(f, volume)
    assert f.segment_classes == () and not f.labels.any()
    assert set(f.probabilities) == {"any"}  # untrained heads (subtypes, location) are not reported
    assert result.slice_scores.shape == (volume.hu.shape[0],)
    assert f.probabilities["any"] == pytest.approx(result.slice_scores.max())
    assert f.iph_location is None
    if name == "vgg_wso":
        assert f.heatmap is not None
        for z, box in result.boxes.items():
            assert result.slice_scores[z] >= 0.5
            assert 0 <= box.y0 < box.y1 <= volume.hu.shape[1] and 0 <= box.x0 < box.x1 <= volume.hu.shape[2]
    else:
        assert f.heatmap is None


def test_dense_unet_labels_and_classes(tiny_weights, volume) -> None:
    engine = deep.build_deep("dense_unet", CFG, tiny_weights)
    assert isinstance(engine, deep.DenseUNetEngine)
    f = engine.analyse(volume)
    _check_common(f, volume)
    assert f.segment_classes == ("IPH", "IVH", "SAH", "SDH", "EDH")
    assert set(f.probabilities) == {"any", *f.segment_classes}
    assert f.probabilities["any"] == pytest.approx(max(f.probabilities[c] for c in f.segment_classes))


def test_dense_unet_non_square_and_batching(tiny_weights, volume) -> None:
    cropped = replace(volume, hu=np.ascontiguousarray(volume.hu[:5, 8:56, :]))  # 48 x 64
    a = deep.build_deep("dense_unet", replace(CFG, batch_size=2), tiny_weights).analyse(cropped)
    b = deep.build_deep("dense_unet", replace(CFG, batch_size=5), tiny_weights).analyse(cropped)
    assert a.labels.shape == cropped.hu.shape
    np.testing.assert_array_equal(a.labels, b.labels)  # batch size does not change the result (eval mode)


def test_volume_regressor(tiny_weights, volume, tmp_path) -> None:
    engine = deep.build_deep("resnet3d_multitask", CFG, tiny_weights)
    assert isinstance(engine, deep.VolumeRegressorEngine)
    f = engine.analyse(volume)
    _check_common(f, volume)
    assert f.model_volume_ml is not None and f.model_volume_ml >= 0.0
    assert f.prognosis_probability is None  # untrained head: not reported
    assert f.segment_classes == () and f.heatmap is not None
    write_tiny_weights(tmp_path, "resnet3d_multitask", prognosis_trained=True)
    f2 = deep.build_deep("resnet3d_multitask", CFG, tmp_path).analyse(volume)
    assert 0.0 <= f2.prognosis_probability <= 1.0
    assert f2.model_volume_ml == pytest.approx(f.model_volume_ml, rel=1e-5)


def test_missing_weights_stop_the_start_with_the_model_named(tmp_path) -> None:
    config = EngineConfig(models=("classical", "dense_unet"), device="cpu", threads=1)
    with pytest.raises(ConfigError, match=r"engine\.models: dense_unet: no weights"):
        build_models(config, weights_dir=tmp_path)


def test_build_models_and_merge(tiny_weights, volume) -> None:
    config = EngineConfig(models=("resnet50_cls", "classical", "resnet3d_multitask"), device="cpu", threads=1)
    models = build_models(config, weights_dir=tiny_weights)
    assert [m.info.name for m in models] == ["resnet50_cls", "ichnode-classical-hu", "resnet3d_multitask"]
    merged = InferenceEngine(models).analyse(volume)
    assert merged.segment_classes == ("ICH",)  # the segmenting engine provides the labels
    assert "any" in merged.probabilities and merged.model_volume_ml is not None


def test_aggregation() -> None:
    s = [0.1, 0.9, 0.5, 0.7]
    assert deep.aggregate(s, "max") == pytest.approx(0.9)
    assert deep.aggregate(s, "mean_top2") == pytest.approx(0.8)
    assert deep.aggregate(s, "mean_top1") == pytest.approx(0.9)
    assert deep.aggregate(s, "mean_top10") == pytest.approx(np.mean(s))  # k > n: all slices
    assert deep.aggregate([], "max") == 0.0
    for bad in ("mean", "top3", "mean_top0", "mean_topx"):
        with pytest.raises(ValueError):
            deep.parse_aggregation(bad)


def test_engine_config_fields() -> None:
    c = load_config(None, overrides={"engine.models": ["classical", "dense_unet", "vgg_wso"],
                                     "engine.aggregation": "mean_top3", "engine.batch_size": 8})
    assert c.engine.aggregation == "mean_top3" and c.engine.batch_size == 8
    assert load_config(None).engine.models == ("classical",)
    for key, value in (("engine.aggregation", "median"), ("engine.batch_size", 0), ("engine.models", ["unet"])):
        with pytest.raises(ConfigError, match=key.split(".")[1]):
            load_config(None, overrides={key: value})


def test_trained_heads_are_reported(tmp_path, volume) -> None:
    """The same weights with the sidecar flag set true: now the head's values are read and reported."""
    write_tiny_weights(tmp_path, "vgg_wso", subtypes_trained=True)
    f = deep.build_deep("vgg_wso", CFG, tmp_path).analyse(volume)
    assert set(f.probabilities) == {"any", "EDH", "IPH", "IVH", "SAH", "SDH"}
    _check_common(f, volume)
    write_tiny_weights(tmp_path, "dtvit", location_trained=True)
    assert deep.build_deep("dtvit", CFG, tmp_path).analyse(volume).iph_location in LOCATION_CLASSES


def test_untrained_heads_are_logged_once_at_load(tiny_weights) -> None:
    with capture_logs() as logs:
        deep.build_deep("resnet3d_multitask", CFG, tiny_weights)
    events = [e for e in logs if e["event"] == "model_head_not_reported"]
    assert [(e["model"], e["head"], e["flag"]) for e in events] == [
        ("resnet3d_multitask", "prognosis", "prognosis_trained")]


def test_engine_refuses_a_network_of_another_task(tiny_weights) -> None:
    with pytest.raises(ValueError, match="slice_segmentation"):
        deep.SliceClassifierEngine("dense_unet", CFG, tiny_weights)
    assert set(deep.ENGINES) == {get(n).task for n in ("resnet50_cls", "dense_unet", "resnet3d_multitask")}


@pytest.mark.parametrize("name", ["resnet50_cls", "vgg_wso", "dtvit"])
def test_slice_scores_are_the_registry_head_on_the_registry_input(name, tiny_weights, volume) -> None:
    """Serving reads P(hemorrhage) of exactly the input and head that training uses."""
    engine = deep.build_deep(name, CFG, tiny_weights)
    spec = get(name)
    x = spec.input.hu_to_input(volume.hu, engine.input_size).array
    with torch.no_grad():
        expected = spec.heads.hemorrhage(engine.model(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(engine.analyse_detailed(volume).slice_scores, expected, rtol=1e-5, atol=1e-6)


def test_device_selection() -> None:
    assert deep.select_device("cpu", 1).type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert deep.select_device("auto", 1).type == expected
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError):
            deep.select_device("cuda", 1)


def test_sidecar_classes_are_checked(tmp_path) -> None:
    path = write_tiny_weights(tmp_path, "dense_unet")
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["classes"] = ["IPH", "XYZ", "SAH", "SDH", "EDH"]
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="XYZ"):
        deep.DenseUNetEngine(config=CFG, weights_dir=tmp_path)
