"""Configuration: frozen dataclasses loaded from YAML, validated at load.

Errors name the file, the dotted key and the bad value. Loading has no side effects (no directories
are created here; the node does that when it starts).
"""
from __future__ import annotations

import dataclasses
import os
import ipaddress
import re
import ssl
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from typing import ClassVar
from importlib import resources
from pathlib import Path

import yaml

from ichnode.domain import Priority
from ichnode.errors import ConfigError
from ichnode.store.db import is_postgresql, redact


@dataclass(frozen=True)
class NodeConfig:
    ae_title: str = "ICHNODE"
    host: str = "0.0.0.0"
    port: int = 11112
    # Empty tuple: any calling AE title is accepted.
    allowed_calling_aets: tuple[str, ...] = ()
    # A peer must call the node by node.ae_title; false accepts any called AE title.
    check_called_aet: bool = True
    max_associations: int = 10
    # Receive limits (docs/security.md): a hostile or broken peer may cost this much and no more.
    max_pdu: int = 4 * 1024 * 1024  # advertised and enforced; a CT image fits in one PDU
    network_timeout_s: float = 60.0  # each PDU must arrive whole within this (not per recv)
    max_association_s: float = 3600.0  # an association older than this is aborted
    max_connections: int = 64  # open TCP connections, associated or not
    max_connections_per_address: int = 8  # so one source cannot take every association
    max_command_kb: int = 64  # a DIMSE command set is a few hundred bytes
    # Source addresses allowed to connect (CIDRs, e.g. 10.20.0.0/16); empty: any address.
    allowed_addresses: tuple[str, ...] = ()
    # Disk watermarks for the spool's file system: above either, C-STORE answers 0xA700
    # (out of resources) without writing; service resumes by itself once below.
    min_free_disk_mb: float = 512.0
    max_disk_use_percent: float = 98.0
    max_instance_mb: float = 1024.0  # a larger dataset is refused with 0xA700


@dataclass(frozen=True)
class SpoolConfig:
    # Prepared slots (ichnode/store/slots.py): pre-written files an instance is flushed into
    # without a journal commit, about 1.5 ms faster per instance. 0: off. Each takes slot_kb of
    # disk while it waits; instances over slot_kb or under half of it are written the usual way.
    prepared_slots: int = 512
    slot_kb: int = 640  # a 512 x 512 16-bit CT image with its header fits


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
    # Checked before any header or pixel is read into memory (a series beyond them is not analysed).
    max_slices: int = 2000
    max_matrix: int = 1024  # Rows and Columns
    min_coverage_mm: float = 60.0
    min_slice_thickness_mm: float = 0.4
    max_slice_thickness_mm: float = 10.0
    max_tilt_deg: float = 30.0
    max_axial_deviation_deg: float = 35.0  # beyond tilt: the series is coronal / sagittal / oblique
    gap_tolerance: float = 0.5  # a step larger than (1 + this) x the median step is a gap
    # Gaps that lose at most this much coverage in all are tolerated (one thin slice of a 0.625 mm
    # series); a missing 5 mm slice is not.
    max_missing_mm: float = 2.0
    # Contrast-enhanced series (ContrastBolusAgent set, or enhanced vessels in the images) are not
    # analysed; false analyses them anyway. The images count as enhanced from this much intracranial
    # tissue at 120-600 HU away from the skull (ichnode/infer/contrast.py).
    reject_contrast: bool = True
    contrast_enhanced_ml: float = 1.5


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
    edge_steps: int = 3  # rings of edge_ring_mm the edge may move, also to the slices above and below
    pv_reach_mm: float = 3.0  # partial-volume shell around a lesion whose blood fractions count (0: off)
    pv_core_mm: float = 1.5  # a lesion's blood density is read this far inside its edge
    pv_background_mm: float = 3.0  # scale of the local background the fractions are read against
    pv_min_contrast_hu: float = 10.0  # blood must stand this far above its background to count
    # Real anatomy (docs/models/real-ct.md): denser voxels (bone's partial volume, calcifications,
    # vessels) are not smoothed into their neighbours; no lesion starts within midline_mm of the
    # midline (falx, sagittal and straight sinuses) or from a component whose median is under
    # seed_min_median_hu (unclotted blood of the sinuses and veins, 40-55 HU; acute clot 55-90 HU).
    smoothing_max_hu: float = 120.0
    midline_mm: float = 4.0  # 0: off
    seed_min_median_hu: float = 55.0  # on slices thicker than 3 mm, 2 HU less (see classical.py)
    opening_radius_mm: float = 0.0  # > 0 removes hyperdense structures thinner than 2x this
    min_lesion_ml: float = 0.2
    smoothing_sigma_mm: float = 0.7  # at least this much smoothing...
    max_smoothing_sigma_mm: float = 2.0  # ...at most this much...
    target_noise_hu: float = 2.0  # ...chosen to bring the series' noise down to this


@dataclass(frozen=True)
class BlastCtConfig:
    """BLAST-CT (ichnode.infer.blast_ct): its weights are not shipped, name the folder here."""
    weights_dir: Path | None = None  # folder with model_1.pt .. model_12.pt (state dicts)
    members: tuple[int, ...] | str = (1,)  # ensemble members to run (1..12), or "all"
    device: str | None = None  # auto | cpu | cuda; None: engine.device


@dataclass(frozen=True)
class EngineConfig:
    models: tuple[str, ...] = ("classical",)
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 2
    # Deep models (ichnode.infer.deep): slices per forward pass, and how slice scores become the series
    # score: "max" or "mean_topK" (mean of the K highest slices, e.g. mean_top3).
    batch_size: int = 16
    aggregation: str = "max"
    classical: ClassicalConfig = field(default_factory=ClassicalConfig)
    blast_ct: BlastCtConfig = field(default_factory=BlastCtConfig)


@dataclass(frozen=True)
class ClientTls:
    """TLS for an outbound connection (a dimse destination, the MLLP listener): given, TLS is on."""
    ca: Path | None = None  # PEM CA certificate(s) the peer's certificate must chain to; None: system CAs
    cert: Path | None = None  # PEM client certificate for a peer that requires one; with key
    key: Path | None = None  # its unencrypted PEM private key
    verify: bool = True  # false: no certificate or host name check (encryption only; warned at start)
    server_name: str | None = None  # name the certificate must carry (and SNI); None: the host


@dataclass(frozen=True)
class DimseDestination:
    """kind "dimse" (the default): C-STORE to ae_title@host:port; DICOM TLS with a `tls` block."""
    name: str
    ae_title: str
    host: str
    port: int
    tls: ClientTls | None = None
    kind: ClassVar[str] = "dimse"


@dataclass(frozen=True)
class StowDestination:
    """kind "stow": DICOMweb STOW-RS POST to url, the service root (e.g. http://pacs:8042/dicom-web);
    TLS comes from an https:// url."""
    name: str
    url: str
    kind: ClassVar[str] = "stow"


# A destination is one of these, tagged by `kind` in the file; each kind is carried by the outbox
# channel of the same name (ichnode.delivery.channels).
Destination = DimseDestination | StowDestination
DESTINATION_KINDS = {kind.kind: kind for kind in (DimseDestination, StowDestination)}


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
class TriageConfig:
    """Priority rules (ichnode/triage/priority.py). Volumes in mL, probabilities in [0, 1]."""
    # IPH volume above which a study is critical, by location (seed 000: 30 mL supratentorial,
    # 15 mL infratentorial).
    critical_supratentorial_iph_ml: float = 30.0
    critical_infratentorial_iph_ml: float = 15.0
    # An engine that cannot tell subtypes apart (class ICH) is judged as IPH by the rule above.
    undifferentiated_as_iph: bool = True
    # IPH / ICH whose location the engine did not give: judged as "supratentorial" or "infratentorial".
    unknown_location: str = "supratentorial"
    critical_total_ml: float | None = None  # any hemorrhage in all above this: critical (None: off)
    high_volume_ml: float = 1.0  # any hemorrhage in all at least this: high
    high_probability: float = 0.5  # a probability ("any" or a subtype) at least this: high
    flag_volume_ml: float = 0.1  # a class with at least this volume is flagged
    flag_probability: float = 0.5  # a class with at least this probability is flagged


@dataclass(frozen=True)
class WebUser:
    name: str
    # "scrypt$n$r$p$salt$hash" (base64), made by `ichnode hash-password`; never a plain password
    password_hash: str


@dataclass(frozen=True)
class WebConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8443
    users: tuple[WebUser, ...] = ()
    # Unused since sessions are kept on the server (ichnode/web/sessions.py); still accepted so
    # existing configs load. Logins end at a restart.
    session_secret: str | None = None
    session_max_age_s: int = 12 * 3600  # a login lasts this long, enforced on the server
    secure_cookie: str = "auto"  # auto (TLS here, or https via a trusted proxy) | always | never
    tls_cert: Path | None = None  # both set: HTTPS
    tls_key: Path | None = None
    refresh_s: float = 5.0  # how often an open worklist page polls for changes
    login_max_failures: int = 5  # failed logins for one account within login_window_s: then 429
    login_max_failures_per_address: int = 30  # ... from one client address (an IPv6 /64)
    login_window_s: float = 900.0
    closed_after_days: float | None = 7.0  # acknowledged/dismissed rows older than this leave the
    # worklist (open rows never do); None: keep all
    stow_max_mb: float = 2048.0  # largest STOW-RS request body (POST /dicomweb/studies)
    metrics: bool = True  # /metrics (Prometheus, no patient data), for web users (session or Basic)
    metrics_token: str | None = None  # ...and for "Authorization: Bearer <this>" (a scraper)


@dataclass(frozen=True)
class MllpConfig:
    host: str
    port: int
    sending_application: str = "ICHNODE"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    tls: ClientTls | None = None  # MLLP over TLS


@dataclass(frozen=True)
class NotifyConfig:
    mllp: MllpConfig | None = None  # HL7 v2 ORU^R01 over MLLP
    webhook_url: str | None = None  # JSON POST
    priorities: tuple[str, ...] = tuple(p.value for p in Priority)  # which to send
    max_attempts: int = 8
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 120.0
    timeout_s: float = 10.0


@dataclass(frozen=True)
class CertificateAets:
    common_name: str
    ae_titles: tuple[str, ...]


@dataclass(frozen=True)
class TlsConfig:
    """DICOM TLS for the node's SCP: cert + key turn it on; ca makes it mutual (client certs)."""
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    handshake_timeout_s: float = 10.0
    # With ca: the calling AE titles each client certificate (by subject common name) may use;
    # empty: any allowed calling AE title with any certificate signed by ca.
    certificate_aets: tuple[CertificateAets, ...] = ()


@dataclass(frozen=True)
class RetentionConfig:
    # Spooled instances of series whose job is DONE are deleted this many hours after it finished
    # (None: keep them forever). Failed and unfinished jobs keep their instances.
    purge_after_hours: float | None = 168.0
    interval_s: float = 600.0  # how often the purge runs


@dataclass(frozen=True)
class ClusterConfig:
    """Cluster mode (`ichnode serve --role receiver|worker`, ichnode/cluster/). A URL left out here
    is read from the environment (ICHNODE_BROKER_URL, ICHNODE_DATABASE_URL): credentials can stay
    out of the file (a Kubernetes Secret)."""
    broker_url: str | None = None  # RabbitMQ: amqp://user:password@host:5672/vhost
    database_url: str | None = None  # PostgreSQL: postgresql://user:password@host:5432/database
    # A job queued this long without a worker taking it is published again (its message may have
    # been lost with a receiver between commit and publish; a duplicate is dropped).
    requeue_after_s: float = 120.0


CLUSTER_ENV = {"broker_url": "ICHNODE_BROKER_URL", "database_url": "ICHNODE_DATABASE_URL"}


@dataclass(frozen=True)
class Config:
    data_dir: Path = Path("./var")
    node: NodeConfig = field(default_factory=NodeConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    assembly: AssemblyConfig = field(default_factory=AssemblyConfig)
    eligibility: EligibilityConfig = field(default_factory=EligibilityConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    destinations: tuple[Destination, ...] = ()
    sender: SenderConfig = field(default_factory=SenderConfig)
    results: ResultsConfig = field(default_factory=ResultsConfig)
    triage: TriageConfig = field(default_factory=TriageConfig)
    web: WebConfig = field(default_factory=WebConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
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

    @property
    def database(self) -> Path | str:
        """Where the job store, outbox and worklist live: PostgreSQL in cluster mode, else SQLite."""
        return self.cluster.database_url or self.db_path


def default_config_text() -> str:
    """The embedded default YAML shipped inside the package (same as config/ichnode.yaml)."""
    return resources.files("ichnode").joinpath("defaults/ichnode.yaml").read_text()


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping: plain YAML keeps the last one
    silently, so an operator's edit to the first block would do nothing."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"key {key!r} is given twice",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


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
        raw = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(raw).__name__}")
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    config = _build(Config, raw, source, "")
    from_env = {key: os.environ[env] for key, env in CLUSTER_ENV.items()
                if getattr(config.cluster, key) is None and os.environ.get(env)}
    if from_env:
        config = dataclasses.replace(config, cluster=dataclasses.replace(config.cluster, **from_env))
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
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in raw
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{source}: {prefix}{missing[0]}: required")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            values[f.name] = _convert(hints[f.name], raw[f.name], source, prefix + f.name)
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'top level'}: {exc}") from exc


def _build_destination(raw, source: str, key: str) -> Destination:
    """The destination class its `kind` names (default dimse), built from the other keys."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {key}: expected a mapping, got {raw!r}")
    kind = raw.get("kind", "dimse")
    if kind not in DESTINATION_KINDS:
        raise ConfigError(f"{source}: {key}.kind: must be one of {', '.join(DESTINATION_KINDS)} (got {kind!r})")
    if kind == "stow" and "tls" in raw:
        raise ConfigError(f"{source}: {key}.tls: a stow destination gets TLS from an https:// url")
    return _build(DESTINATION_KINDS[kind], {k: v for k, v in raw.items() if k != "kind"}, source, key + ".")


def _convert(tp, value, source: str, key: str):
    if tp == Destination:
        return _build_destination(value, source, key)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) > 1:  # e.g. tuple[int, ...] | str: the alternative of the value's kind
            for alternative in args:
                if (typing.get_origin(alternative) is tuple) == isinstance(value, list):
                    return _convert(alternative, value, source, key)
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




def _check_destination(dest: Destination, key: str, bad, check_aet) -> None:
    if isinstance(dest, DimseDestination):
        check_aet(f"{key}.ae_title", dest.ae_title)
        if not dest.host:
            raise bad(f"{key}.host", dest.host, "a dimse destination needs a host")
        if not 1 <= dest.port <= 65535:
            raise bad(f"{key}.port", dest.port, "must be 1..65535")
        _check_client_tls(dest.tls, f"{key}.tls", bad)
        return
    parsed = urllib.parse.urlsplit(dest.url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise bad(f"{key}.url", dest.url, "a stow destination needs an http(s) URL with a host, "
                                          "e.g. http://pacs:8042/dicom-web")
    if parsed.query or parsed.fragment:
        raise bad(f"{key}.url", dest.url, "the DICOMweb service root has no query or fragment")
    try:
        parsed.port
    except ValueError:
        raise bad(f"{key}.url", dest.url, "the port must be 1..65535") from None


def _check_client_tls(tls: ClientTls | None, key: str, bad) -> None:
    """An outbound TLS block: files there and loadable now, not at the first send."""
    if tls is None:
        return
    if (tls.cert is None) != (tls.key is None):
        missing = f"{key}.key" if tls.key is None else f"{key}.cert"
        raise bad(missing, None, "cert and key are given together")
    for name in ("ca", "cert", "key"):
        path = getattr(tls, name)
        if path is not None and not path.is_file():
            raise bad(f"{key}.{name}", str(path), "no such file")
    if tls.ca is not None and not tls.verify:
        raise bad(f"{key}.ca", str(tls.ca), "has no effect with verify: false")
    if tls.server_name is not None and not tls.server_name.strip():
        raise bad(f"{key}.server_name", tls.server_name, "must not be empty (null: the host)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.ca is not None:
        try:
            context.load_verify_locations(cafile=str(tls.ca))
        except (ssl.SSLError, OSError) as exc:
            raise bad(f"{key}.ca", str(tls.ca), f"not a PEM CA certificate file ({exc})") from None
    if tls.cert is not None:
        def no_password():
            raise ValueError("the key is encrypted; give an unencrypted key readable by ichnode only")
        try:
            context.load_cert_chain(str(tls.cert), str(tls.key), password=no_password)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise bad(f"{key}.cert", str(tls.cert),
                      f"certificate and {key}.key do not load together ({exc})") from None


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
    if config.spool.prepared_slots < 0:
        raise bad("spool.prepared_slots", config.spool.prepared_slots, "must be 0 (off) or more")
    if config.spool.slot_kb < 1:
        raise bad("spool.slot_kb", config.spool.slot_kb, "must be at least 1")
    if config.assembly.quiet_seconds <= 0:
        raise bad("assembly.quiet_seconds", config.assembly.quiet_seconds, "must be positive")
    if config.assembly.expected_count is not None and config.assembly.expected_count < 1:
        raise bad("assembly.expected_count", config.assembly.expected_count, "must be at least 1")
    for key in ("max_slices", "max_matrix"):
        if getattr(config.eligibility, key) < 1:
            raise bad(f"eligibility.{key}", getattr(config.eligibility, key), "must be at least 1")
    if config.eligibility.contrast_enhanced_ml <= 0:
        raise bad("eligibility.contrast_enhanced_ml", config.eligibility.contrast_enhanced_ml,
                  "must be positive (reject_contrast: false turns the check off)")
    engines = {"classical", "blast_ct"}  # the rest are the registry's networks
    if set(config.engine.models) - engines:
        from ichnode.models.registry import names  # torch is imported only when a network is named

        engines |= set(names())
    for i, name in enumerate(config.engine.models):
        if name not in engines:
            raise bad(f"engine.models[{i}]", name, f"unknown model; known: {sorted(engines)}")
    if config.engine.device not in ("auto", "cpu", "cuda"):
        raise bad("engine.device", config.engine.device, "must be auto, cpu or cuda")
    if "blast_ct" in config.engine.models:
        _check_blast_ct(config.engine.blast_ct, bad)
    if config.engine.batch_size < 1:
        raise bad("engine.batch_size", config.engine.batch_size, "must be at least 1")
    if not re.fullmatch(r"max|mean_top[1-9][0-9]*", config.engine.aggregation):
        raise bad("engine.aggregation", config.engine.aggregation, "must be max or mean_topK (e.g. mean_top3)")
    if config.log_format not in ("auto", "json", "console"):
        raise bad("log_format", config.log_format, "must be auto, json or console")
    names = [d.name for d in config.destinations]
    for i, dest in enumerate(config.destinations):
        _check_destination(dest, f"destinations[{i}]", bad, check_aet)
        if names.count(dest.name) > 1:
            raise bad(f"destinations[{i}].name", dest.name, "destination names must be unique")
    if config.sender.max_attempts < 1:
        raise bad("sender.max_attempts", config.sender.max_attempts, "must be at least 1")
    _check_triage(config, bad)
    _check_web(config, bad)
    _check_notify(config, bad)
    _check_reliability(config, bad)
    _check_cluster(config, bad)


BLAST_CT_MEMBERS = 12


def _check_cluster(config: Config, bad) -> None:
    cluster = config.cluster
    if cluster.broker_url is not None and not cluster.broker_url.startswith(("amqp://", "amqps://")):
        raise bad("cluster.broker_url", redact(cluster.broker_url), "must be an amqp:// or amqps:// URL")
    if cluster.database_url is not None and not is_postgresql(cluster.database_url):
        raise bad("cluster.database_url", redact(cluster.database_url), "must be a postgresql:// URL")
    if cluster.requeue_after_s <= 0:
        raise bad("cluster.requeue_after_s", cluster.requeue_after_s, "must be positive")
    if (cluster.broker_url or cluster.database_url) and config.spool.prepared_slots:
        raise bad("spool.prepared_slots", config.spool.prepared_slots,
                  "must be 0 in cluster mode: workers on other hosts read a file by its final name, "
                  "which a prepared slot gets only after the success status")


def require_cluster(config: Config, role: str) -> None:
    """`serve --role receiver|worker` needs both URLs."""
    for key, env in CLUSTER_ENV.items():
        if getattr(config.cluster, key) is None:
            raise ConfigError(f"cluster.{key}: needed for --role {role} (or the environment variable {env})")


def _check_blast_ct(cfg: BlastCtConfig, bad) -> None:
    """Only when engine.models names blast_ct: its weights must be there at startup."""
    if cfg.weights_dir is None:
        raise bad("engine.blast_ct.weights_dir", None, "needed when engine.models names blast_ct: "
                  "the folder with model_1.pt .. model_12.pt (not shipped with ichnode)")
    if not cfg.weights_dir.is_dir():
        raise bad("engine.blast_ct.weights_dir", str(cfg.weights_dir), "no such folder")
    if isinstance(cfg.members, str):
        if cfg.members != "all":
            raise bad("engine.blast_ct.members", cfg.members, 'must be a list of 1..12 or "all"')
        members = tuple(range(1, BLAST_CT_MEMBERS + 1))
    else:
        members = cfg.members
        if not members or len(set(members)) != len(members) or \
                not all(1 <= m <= BLAST_CT_MEMBERS for m in members):
            raise bad("engine.blast_ct.members", list(members),
                      'must be distinct numbers 1..12 (at least one), or "all"')
    for m in members:
        if not (cfg.weights_dir / f"model_{m}.pt").is_file():
            raise bad("engine.blast_ct.weights_dir", str(cfg.weights_dir), f"has no model_{m}.pt")
    if cfg.device not in (None, "auto", "cpu", "cuda"):
        raise bad("engine.blast_ct.device", cfg.device, "must be auto, cpu or cuda (or null: engine.device)")


def _check_triage(config: Config, bad) -> None:
    tri = config.triage
    for name in ("critical_supratentorial_iph_ml", "critical_infratentorial_iph_ml", "high_volume_ml",
                 "flag_volume_ml"):
        if getattr(tri, name) < 0:
            raise bad(f"triage.{name}", getattr(tri, name), "must not be negative")
    for name in ("high_probability", "flag_probability"):
        if not 0 <= getattr(tri, name) <= 1:
            raise bad(f"triage.{name}", getattr(tri, name), "must be between 0 and 1")
    if tri.unknown_location not in ("supratentorial", "infratentorial"):
        raise bad("triage.unknown_location", tri.unknown_location,
                  "must be supratentorial or infratentorial")


def _check_web(config: Config, bad) -> None:
    web = config.web
    if not 0 <= web.port <= 65535:
        raise bad("web.port", web.port, "must be 0..65535 (0 picks a free port)")
    if (web.tls_cert is None) != (web.tls_key is None):
        raise bad("web.tls_cert", web.tls_cert, "tls_cert and tls_key go together")
    if web.refresh_s <= 0:
        raise bad("web.refresh_s", web.refresh_s, "must be positive")
    if web.login_max_failures < 1:
        raise bad("web.login_max_failures", web.login_max_failures, "must be at least 1")
    if web.login_max_failures_per_address < 1:
        raise bad("web.login_max_failures_per_address", web.login_max_failures_per_address,
                  "must be at least 1")
    if web.session_max_age_s < 1:
        raise bad("web.session_max_age_s", web.session_max_age_s, "must be at least 1")
    if web.secure_cookie not in ("auto", "always", "never"):
        raise bad("web.secure_cookie", web.secure_cookie, "must be auto, always or never")
    if web.metrics_token is not None and len(web.metrics_token) < 32:
        raise bad("web.metrics_token", "<hidden>",
                  "must be at least 32 characters (e.g. `openssl rand -hex 32`), or null")
    if web.login_window_s <= 0:
        raise bad("web.login_window_s", web.login_window_s, "must be positive")
    if web.stow_max_mb <= 0:
        raise bad("web.stow_max_mb", web.stow_max_mb, "must be positive")
    if web.closed_after_days is not None and web.closed_after_days <= 0:
        raise bad("web.closed_after_days", web.closed_after_days, "must be positive, or null")
    user_names = [u.name for u in web.users]
    for i, user in enumerate(web.users):
        if not user.name or user_names.count(user.name) > 1:
            raise bad(f"web.users[{i}].name", user.name, "user names must be non-empty and unique")
        if not user.password_hash.startswith(("scrypt$", "pbkdf2_sha256$")):
            raise bad(f"web.users[{i}].password_hash", "<hidden>",
                      "must be a hash from `ichnode hash-password` (scrypt$... or pbkdf2_sha256$...)")
    if web.enabled and not web.users:
        raise bad("web.users", [], "the worklist needs at least one user when web.enabled is true")


def _check_notify(config: Config, bad) -> None:
    notify = config.notify
    if notify.mllp is not None and not 1 <= notify.mllp.port <= 65535:
        raise bad("notify.mllp.port", notify.mllp.port, "must be 1..65535")
    if notify.mllp is not None:
        _check_client_tls(notify.mllp.tls, "notify.mllp.tls", bad)
    if notify.webhook_url is not None and not notify.webhook_url.startswith(("http://", "https://")):
        raise bad("notify.webhook_url", notify.webhook_url, "must be an http:// or https:// URL")
    known = [p.value for p in Priority]
    for i, priority in enumerate(notify.priorities):
        if priority not in known:
            raise bad(f"notify.priorities[{i}]", priority, f"must be one of {list(known)}")
    if notify.max_attempts < 1:
        raise bad("notify.max_attempts", notify.max_attempts, "must be at least 1")


def _check_reliability(config: Config, bad) -> None:
    """Access control, disk watermarks, TLS and retention."""
    node = config.node
    for i, cidr in enumerate(node.allowed_addresses):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise bad(f"node.allowed_addresses[{i}]", cidr,
                      "must be an IP address or CIDR, e.g. 10.20.0.0/16") from None
    for key in ("network_timeout_s", "max_association_s"):
        if getattr(node, key) <= 0:
            raise bad(f"node.{key}", getattr(node, key), "must be positive")
    if not 4096 <= node.max_pdu <= 64 * 1024 * 1024:
        raise bad("node.max_pdu", node.max_pdu, "must be 4096 to 67108864 bytes (0, unlimited, "
                  "is not accepted: a peer could then make the node hold any PDU it declares)")
    for key in ("max_connections", "max_connections_per_address", "max_command_kb"):
        if getattr(node, key) < 1:
            raise bad(f"node.{key}", getattr(node, key), "must be at least 1")
    if node.max_connections < node.max_associations:
        raise bad("node.max_connections", node.max_connections,
                  f"must be at least node.max_associations ({node.max_associations})")
    if node.min_free_disk_mb < 0:
        raise bad("node.min_free_disk_mb", node.min_free_disk_mb, "must not be negative")
    if not 0 < node.max_disk_use_percent <= 100:
        raise bad("node.max_disk_use_percent", node.max_disk_use_percent, "must be in (0, 100]")
    if node.max_instance_mb <= 0:
        raise bad("node.max_instance_mb", node.max_instance_mb, "must be positive")
    tls = config.tls
    if (tls.cert is None) != (tls.key is None):
        missing = "tls.key" if tls.key is None else "tls.cert"
        raise bad(missing, None, "tls.cert and tls.key are given together")
    if tls.ca is not None and tls.cert is None:
        raise bad("tls.ca", str(tls.ca), "mutual TLS needs tls.cert and tls.key too")
    for name in ("cert", "key", "ca"):
        path = getattr(tls, name)
        if path is not None and not path.is_file():
            raise bad(f"tls.{name}", str(path), "no such file")
    if tls.certificate_aets and tls.ca is None:
        raise bad("tls.certificate_aets", len(tls.certificate_aets),
                  "maps client certificates, so it needs tls.ca (mutual TLS)")
    for i, entry in enumerate(tls.certificate_aets):
        if not entry.ae_titles:
            raise bad(f"tls.certificate_aets[{i}].ae_titles", [], "name at least one AE title")
    if tls.handshake_timeout_s <= 0:
        raise bad("tls.handshake_timeout_s", tls.handshake_timeout_s, "must be positive")
    ret = config.retention
    if ret.purge_after_hours is not None and ret.purge_after_hours <= 0:
        raise bad("retention.purge_after_hours", ret.purge_after_hours,
                  "must be positive (null keeps instances forever)")
    if ret.interval_s <= 0:
        raise bad("retention.interval_s", ret.interval_s, "must be positive")
