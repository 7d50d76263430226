"""The inference engine: runs the configured models on a Volume and merges their Findings.

Every model implements the `Engine` protocol of ichnode.domain (info + analyse(volume)). The first
model that segments provides the label volume; probabilities and other outputs are merged by key, each
with the model that produced it (Findings.sources).
"""
from __future__ import annotations

from dataclasses import replace

from ichnode.config import EngineConfig
from ichnode.domain import Engine, Findings, ModelInfo, Volume
from ichnode.infer.classical import ClassicalEngine


def build_models(config: EngineConfig, weights_dir=None) -> list[Engine]:
    """One engine per configured name. The deep models (ichnode.infer.deep) load their shipped weights,
    BLAST-CT loads engine.blast_ct.weights_dir; missing weights are a ConfigError, never a fallback."""
    models: list[Engine] = []
    for name in config.models:
        if name == "classical":
            model: Engine = ClassicalEngine(config.classical)
        elif name == "blast_ct":
            from ichnode.infer.blast_ct import BlastCtEngine  # weights from engine.blast_ct.weights_dir

            model = BlastCtEngine(config)
        else:
            from ichnode.infer.deep import build_deep  # torch is imported only when a model needs it

            model = build_deep(name, config, weights_dir)
        models.append(model)
    return models


class InferenceEngine:
    def __init__(self, models: list[Engine]):
        if not models:
            raise ValueError("at least one model is needed")
        self.models = models

    @property
    def infos(self) -> tuple[ModelInfo, ...]:
        return tuple(m.info for m in self.models)

    def analyse(self, volume: Volume) -> Findings:
        results = [model.analyse(volume) for model in self.models]
        # segments found > an engine that segments (found nothing) > a classifier without labels
        primary = next((f for f in results if f.labels.any()),
                       next((f for f in results if f.segment_classes), results[0]))
        # Each merged value keeps the model that produced it (Findings.sources): the SR names it.
        sources = {Findings.LABELS: primary.source(Findings.LABELS)} if primary.segment_classes else {}
        probabilities: dict[str, float] = {}
        for findings in results:  # a later engine's probability replaces an earlier one's, source and all
            probabilities.update(findings.probabilities)
            for key in map(Findings.probability_key, findings.probabilities):
                sources[key] = findings.source(key)
        values = {}
        # The primary's own heatmap first (it matches its labels); the rest from the first engine with one.
        for key, candidates in ((Findings.HEATMAP, [primary, *results]), (Findings.IPH_LOCATION, results),
                                (Findings.MODEL_VOLUME, results), (Findings.PROGNOSIS, results)):
            origin = _first_with(candidates, key)
            values[key] = None if origin is None else getattr(origin, key)
            if origin is not None:
                sources[key] = origin.source(key)
        return replace(primary, probabilities=probabilities, sources=sources, **values)


def _first_with(results: list[Findings], key: str) -> Findings | None:
    """The first findings holding a value for `key` (a provenance key that is also the field's name)."""
    return next((f for f in results if getattr(f, key) is not None), None)
