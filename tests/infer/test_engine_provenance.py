"""Provenance through the merge: every value of merged Findings, and every SR measurement built from them,
names the engine that produced it (Findings.sources), not the engine whose labels won."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pydicom
import pytest

from ichnode import __version__
from ichnode.config import EngineConfig, load_config
from ichnode.domain import Analysis, Findings, ModelInfo, Volume
from ichnode.infer import deep
from ichnode.infer.classical import ClassicalEngine
from ichnode.infer.engine import InferenceEngine, build_models
from ichnode.quantify.volume import quantify
from ichnode.results.seg import build_seg
from ichnode.results.sr import build_sr
from ichnode.synth.dicom_writer import write_phantom
from ichnode.synth.insert import load_background_volume

from tests.helpers import SHARED_DATA

CFG = EngineConfig(device="cpu", threads=1, batch_size=4)
SEGMENTER, CLASSIFIER, REGRESSOR = ModelInfo("seg", "1"), ModelInfo("cls", "2"), ModelInfo("reg", "3")
P = Findings.probability_key


@dataclass
class FakeEngine:
    """The Engine interface returning fixed Findings: the merge is under test here, not a model."""

    info: ModelInfo
    findings: Findings

    def analyse(self, volume: Volume) -> Findings:
        return self.findings


def _fake(info: ModelInfo, *, segments=False, with_sources=True, **values) -> FakeEngine:
    labels = np.zeros((2, 4, 4), np.uint8)
    labels[0, 1, 1] = segments
    findings = Findings(model=info, labels=labels, segment_classes=("IPH",) if segments else (), **values)
    if with_sources:  # as the real engines fill them
        produced = {key: getattr(findings, key) for key in (Findings.HEATMAP, Findings.IPH_LOCATION,
                                                            Findings.MODEL_VOLUME, Findings.PROGNOSIS)}
        produced[Findings.LABELS] = labels if segments else None
        findings = replace(findings, sources=Findings.produced_by(info, produced, findings.probabilities))
    return FakeEngine(info, findings)


HEAT = np.ones((2, 4, 4), np.float32)


def test_merge_keeps_each_values_engine():
    merged = InferenceEngine([
        _fake(CLASSIFIER, probabilities={"any": 0.9, "IPH": 0.7}, iph_location="lobar"),
        _fake(SEGMENTER, segments=True, probabilities={"IPH": 0.8}, heatmap=HEAT),
        _fake(REGRESSOR, model_volume_ml=12.0, heatmap=HEAT * 0.5),
    ]).analyse(None)
    assert merged.model == SEGMENTER  # the engine whose labels these are
    assert merged.probabilities == {"any": 0.9, "IPH": 0.8}  # a later engine's value replaces an earlier one's
    assert dict(merged.sources) == {
        Findings.LABELS: SEGMENTER,
        P("any"): CLASSIFIER,
        P("IPH"): SEGMENTER,  # the value kept is the segmenter's, and so is its source
        Findings.HEATMAP: SEGMENTER,  # the primary's own heatmap first
        Findings.IPH_LOCATION: CLASSIFIER,
        Findings.MODEL_VOLUME: REGRESSOR,
    }  # no prognosis: nobody produced one, nobody is named
    assert merged.model_volume_ml == 12.0 and merged.iph_location == "lobar" and merged.heatmap is HEAT


def test_merge_attributes_values_of_engines_that_record_no_sources():
    """An engine that fills no sources still gets its own values: the merge asks each Findings for the
    source of what it takes (falling back to that Findings' model), never the primary's."""
    merged = InferenceEngine([
        _fake(SEGMENTER, segments=True, with_sources=False),
        _fake(REGRESSOR, with_sources=False, model_volume_ml=3.0, prognosis_probability=0.4, heatmap=HEAT),
        _fake(CLASSIFIER, with_sources=False, probabilities={"any": 0.2}),
    ]).analyse(None)
    assert merged.model == SEGMENTER
    assert merged.source(Findings.HEATMAP) == REGRESSOR  # the primary has none: the first engine with one
    assert merged.source(Findings.MODEL_VOLUME) == merged.source(Findings.PROGNOSIS) == REGRESSOR
    assert merged.source(P("any")) == CLASSIFIER
    assert merged.source(Findings.LABELS) == SEGMENTER


def test_classifier_only_merge_names_no_labels_source():
    merged = InferenceEngine([_fake(CLASSIFIER, probabilities={"any": 0.3}),
                              _fake(REGRESSOR, model_volume_ml=1.0)]).analyse(None)
    assert merged.model == CLASSIFIER and Findings.LABELS not in merged.sources
    assert merged.source(Findings.MODEL_VOLUME) == REGRESSOR


# ----------------------------------------------------------------------------- engines fill sources
def test_classical_sources(volume):
    engine = ClassicalEngine()
    f = engine.analyse(volume)
    assert f.labels.any() and f.heatmap is not None  # the phantom's lesion is found
    assert dict(f.sources) == {Findings.LABELS: engine.info, Findings.HEATMAP: engine.info}


@pytest.mark.parametrize("name, expected", [
    ("resnet50_cls", {P("any")}),
    ("vgg_wso", {P("any"), Findings.HEATMAP}),
    ("dense_unet", {Findings.LABELS, Findings.HEATMAP, P("any"), *map(P, ("IPH", "IVH", "SAH", "SDH", "EDH"))}),
    ("resnet3d_multitask", {Findings.MODEL_VOLUME, Findings.HEATMAP}),  # untrained prognosis: not named
])
def test_deep_engine_sources(name, expected, tiny_weights, volume):
    engine = deep.build_deep(name, CFG, tiny_weights)
    f = engine.analyse(volume)
    if Findings.HEATMAP in expected and f.heatmap is None:  # random weights may leave a map empty
        expected = expected - {Findings.HEATMAP}
    assert set(f.sources) == expected
    assert set(f.sources.values()) == {engine.info}


def test_blast_ct_sources(monkeypatch):
    """BLAST-CT names itself for its labels (its network is left out: the labels are fixed here)."""
    from ichnode.infer.blast_ct import BlastCtEngine

    weights = SHARED_DATA / "blast-ct-v1"
    if not (weights / "model_1.pt").is_file():
        pytest.skip(f"BLAST-CT weights absent: {weights}/model_1.pt")
    engine = BlastCtEngine(load_config(overrides={"engine.models": ["blast_ct"], "engine.threads": 1,
                                                  "engine.blast_ct.weights_dir": str(weights),
                                                  "engine.blast_ct.members": [1]}).engine)
    monkeypatch.setattr(engine, "blast_labels", lambda volume: np.ones((2, 4, 4), np.int64))
    f = engine.analyse(None)
    assert f.labels.any() and dict(f.sources) == {Findings.LABELS: engine.info}


# ------------------------------------------------------------------------- SR of a real merged analysis
def _content(item, group=None):
    """(measurement group tracking identifier, item) of every item below `item`, depth first."""
    for child in item.get("ContentSequence", []):
        name = child.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in child else None
        if name == "Measurement Group":
            group = next(c.TextValue for c in child.ContentSequence
                         if c.ConceptNameCodeSequence[0].CodeMeaning == "Tracking Identifier")
        yield group, child
        yield from _content(child, group)


def _measurements(sr) -> list[tuple[str, str, str | None, tuple[str, str]]]:
    """(group, concept, method, (Algorithm Name, Algorithm Version)) of every NUM item in the SR."""
    out = []
    for group, item in _content(sr):
        if item.ValueType != "NUM":
            continue
        children = {c.ConceptNameCodeSequence[0].CodeMeaning: c for c in item.get("ContentSequence", [])}
        method = children.get("Measurement Method")
        out.append((group, item.ConceptNameCodeSequence[0].CodeMeaning,
                    method.ConceptCodeSequence[0].CodeMeaning if method else None,
                    (children["Algorithm Name"].TextValue, children["Algorithm Version"].TextValue)))
    return out


@pytest.fixture(scope="module")
def merged_analysis(phantom, tmp_path_factory) -> Analysis:
    """Classical + two networks with their shipped weights, merged, on the phantom written as DICOM."""
    folder = tmp_path_factory.mktemp("phantom")
    write_phantom(folder, phantom)
    volume = load_background_volume(folder)
    config = EngineConfig(models=("classical", "resnet50_cls", "resnet3d_multitask"), device="cpu", threads=1)
    models = build_models(config)  # the shipped weights in ichnode/weights
    assert [type(m) for m in models] == [ClassicalEngine, deep.SliceClassifierEngine, deep.VolumeRegressorEngine]
    findings = InferenceEngine(models).analyse(volume)
    quantities = quantify(findings.labels, findings.segment_classes, volume.spacing_mm)
    return Analysis(volume=volume, datasets=volume.datasets, findings=findings, quantities=quantities)


def test_sr_names_each_values_engine(merged_analysis, tmp_path):
    classical = ("ichnode-classical-hu", __version__)
    classifier, regressor = ("resnet50_cls", "1.0.0"), ("resnet3d_multitask", "1.0.0")
    f, q = merged_analysis.findings, merged_analysis.quantities
    assert f.model.name == classical[0] and q.total_ml > 0  # classical segmented the lesion: it is primary

    seg = build_seg(merged_analysis, software_version="test")
    path = tmp_path / "sr.dcm"
    pydicom.dcmwrite(path, build_sr(merged_analysis, seg, software_version="test"), enforce_file_format=True)
    measurements = _measurements(pydicom.dcmread(path))

    by_concept = {}
    for group, concept, method, algorithm in measurements:
        by_concept.setdefault((concept, method), set()).add(algorithm)
    assert by_concept.pop(("Probability", None)) == {classifier}
    assert by_concept.pop(("Volume", "Model regression estimate")) == {regressor}
    # What remains is measured on the label volume: segmented volumes, lesion count, ABC/2.
    assert ("Volume", "Voxel count of segmentation") in by_concept and ("Number of lesions", None) in by_concept
    assert set().union(*by_concept.values()) == {classical}

    # One group, two engines: the summary's probability and its segmented volume.
    summary = {(c, m): a for g, c, m, a in measurements if g == "All hemorrhage"}
    assert summary[("Probability", None)] == classifier
    assert summary[("Volume", "Voxel count of segmentation")] == classical

    alg = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (alg.AlgorithmName, alg.AlgorithmVersion) == classical  # the engine that produced the labels
