"""Configuration: frozen dataclasses loaded from YAML, validated at load.

Errors name the file, the dotted key and the bad value. Loading has no side effects (no directories
are created here; the node does that when it starts).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from ichnode.errors import ConfigError


@dataclass(frozen=True)
class NodeConfig:
    ae_title: str = "ICHNODE"
    host: str = "0.0.0.0"
    port: int = 11112
    # Empty tuple: any calling AE title is accepted.
    allowed_calling_aets: tuple[str, ...] = ()
    max_associations: int = 10
    max_pdu: int = 0  # 0: unlimited, the fastest setting for large CT instances
    network_timeout_s: float = 60.0


@dataclass(frozen=True)
class AssemblyConfig:
    # A series is complete when this many seconds pass without a new instance...
    quiet_seconds: float = 10.0
    # ...or as soon as this many instances arrived (None: use ImagesInAcquisition when present).
    expected_count: int | None = None
    sweep_interval_s: float = 1.0


@dataclass(frozen=True)
class EligibilityConfig:
    modalities: tuple[str, ...] = ("CT",)
    min_slices: int = 8
    min_coverage_mm: float = 60.0
    min_slice_thickness_mm: float = 0.4
    max_slice_thickness_mm: float = 10.0
    max_tilt_deg: float = 30.0
    max_axial_deviation_deg: float = 35.0  # beyond tilt: the series is coronal / sagittal / oblique
    gap_tolerance: float = 0.5  # a step larger than (1 + this) x the median step is a gap
    # Gaps that lose at most this much coverage in all are tolerated (one thin slice of a 0.625 mm
    # series); a missing 5 mm slice is not.
    max_missing_mm: float = 2.0
    reject_contrast: bool = True


@dataclass(frozen=True)
class ClassicalConfig:
    blood_hu_low: float = 50.0
    blood_hu_high: float = 90.0
    brain_hu_low: float = 0.0
    brain_hu_high: float = 90.0
    bone_hu: float = 300.0
    bone_margin_mm: float = 3.0
    bone_rim_mm: float = 2.0  # partial-volume rim along bone: only grows existing collections
    edge_ring_mm: float = 1.5  # how far a lesion's edge may move to its local half-way threshold
    edge_min_hu: float = 40.0  # never below this (grey matter of the phantom and most scans stays under it)
    edge_steps: int = 1
    opening_radius_mm: float = 0.0  # > 0 removes hyperdense structures thinner than 2x this
    min_lesion_ml: float = 0.2
    smoothing_sigma_mm: float = 0.7  # at least this much smoothing...
    max_smoothing_sigma_mm: float = 2.0  # ...at most this much...
    target_noise_hu: float = 2.0  # ...chosen to bring the series' noise down to this


@dataclass(frozen=True)
class EngineConfig:
    models: tuple[str, ...] = ("classical",)
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 2
    classical: ClassicalConfig = field(default_factory=ClassicalConfig)


@dataclass(frozen=True)
class Destination:
    name: str
    ae_title: str
    host: str
    port: int


@dataclass(frozen=True)
class SenderConfig:
    max_attempts: int = 6
    backoff_initial_s: float = 2.0
    backoff_max_s: float = 300.0
    timeout_s: float = 30.0


@dataclass(frozen=True)
class ResultsConfig:
    key_slices: int = 3
    seg_series_number: int = 9001
    sr_series_number: int = 9002
    sc_series_number: int = 9003


@dataclass(frozen=True)
class Config:
    data_dir: Path = Path("./var")
    node: NodeConfig = field(default_factory=NodeConfig)
    assembly: AssemblyConfig = field(default_factory=AssemblyConfig)
    eligibility: EligibilityConfig = field(default_factory=EligibilityConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    destinations: tuple[Destination, ...] = ()
    sender: SenderConfig = field(default_factory=SenderConfig)
    results: ResultsConfig = field(default_factory=ResultsConfig)
    log_format: str = "auto"  # auto | json | console

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def results_dir(self) -> Path:
        return self.data_dir / "results"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "ichnode.sqlite"


def default_config_text() -> str:
    """The embedded default YAML shipped inside the package (same as config/ichnode.yaml)."""
    return resources.files("ichnode").joinpath("defaults/ichnode.yaml").read_text()


def load_config(path: Path | str | None = None, overrides: dict | None = None) -> Config:
    """Load a YAML file (or the embedded default) into a validated Config."""
    if path is None:
        source, text = "<embedded default>", default_config_text()
    else:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(raw).__name__}")
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    config = _build(Config, raw, source, "")
    _check(config, source)
    return config


def _set_dotted(raw: dict, dotted: str, value) -> None:
    node = raw
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _build(cls, raw, source: str, prefix: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(known))})")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            values[f.name] = _convert(hints[f.name], raw[f.name], source, prefix + f.name)
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'}: {exc}") from exc


def _convert(tp, value, source: str, key: str):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, source, key)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        item_tp = typing.get_args(tp)[0]
        return tuple(_convert(item_tp, v, source, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, source, key + ".")
    if tp is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key}: expected a path string, got {value!r}")
        return Path(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key}: expected true or false, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{source}: {key}: unsupported type {tp}")


def _check(config: Config, source: str) -> None:
    def bad(key: str, value, why: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: {why} (got {value!r})")

    def check_aet(key: str, aet: str) -> None:
        if not (0 < len(aet.strip()) <= 16) or "\\" in aet:
            raise bad(key, aet, "an AE title has 1 to 16 characters and no backslash")

    check_aet("node.ae_title", config.node.ae_title)
    for i, aet in enumerate(config.node.allowed_calling_aets):
        check_aet(f"node.allowed_calling_aets[{i}]", aet)
    if not 0 <= config.node.port <= 65535:
        raise bad("node.port", config.node.port, "must be 0..65535 (0 picks a free port)")
    if config.node.max_associations < 1:
        raise bad("node.max_associations", config.node.max_associations, "must be at least 1")
    if config.assembly.quiet_seconds <= 0:
        raise bad("assembly.quiet_seconds", config.assembly.quiet_seconds, "must be positive")
    if config.assembly.expected_count is not None and config.assembly.expected_count < 1:
        raise bad("assembly.expected_count", config.assembly.expected_count, "must be at least 1")
    known_models = {"classical"}
    for i, name in enumerate(config.engine.models):
        if name not in known_models:
            raise bad(f"engine.models[{i}]", name, f"unknown model; known: {sorted(known_models)}")
    if config.engine.device not in ("auto", "cpu", "cuda"):
        raise bad("engine.device", config.engine.device, "must be auto, cpu or cuda")
    if config.log_format not in ("auto", "json", "console"):
        raise bad("log_format", config.log_format, "must be auto, json or console")
    names = [d.name for d in config.destinations]
    for i, dest in enumerate(config.destinations):
        check_aet(f"destinations[{i}].ae_title", dest.ae_title)
        if not 1 <= dest.port <= 65535:
            raise bad(f"destinations[{i}].port", dest.port, "must be 1..65535")
        if names.count(dest.name) > 1:
            raise bad(f"destinations[{i}].name", dest.name, "destination names must be unique")
    if config.sender.max_attempts < 1:
        raise bad("sender.max_attempts", config.sender.max_attempts, "must be at least 1")
