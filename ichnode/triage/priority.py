"""Pure priority rules: an Analysis in, a priority and a short human-readable reason out.

Rules, first match wins (thresholds from the `triage:` section of the config):
1. not analysed                                        -> "not analysed"
2. IPH above 30 mL supratentorial or 15 mL infratentorial (seed 000's discussion; an engine that
   cannot tell subtypes apart has its ICH judged as IPH; an unknown location is judged as
   `unknown_location`), or any hemorrhage above `critical_total_ml` when set -> critical
3. any hemorrhage of at least `high_volume_ml`, or a probability ("any" or a class) of at least
   `high_probability`                                  -> high
4. otherwise                                           -> routine

Sort order on the worklist: critical, high, not analysed (no AI opinion: a person must read it),
routine.
"""
from __future__ import annotations

from dataclasses import dataclass

from ichnode.config import TriageConfig
from ichnode.domain import ALL_CLASSES, Analysis, Priority


SUPRATENTORIAL = ("deep", "lobar")


@dataclass(frozen=True)
class TriageResult:
    priority: Priority
    reason: str
    flags: tuple[str, ...]  # classes present (ALL_CLASSES order), by volume or probability


def flagged_classes(volumes: dict[str, float], probabilities: dict[str, float],
                    config: TriageConfig) -> tuple[str, ...]:
    """Classes whose segmented volume or detection probability reaches the flag thresholds."""
    return tuple(c for c in ALL_CLASSES
                 if volumes.get(c, 0.0) >= max(config.flag_volume_ml, 1e-9)
                 or probabilities.get(c, 0.0) >= config.flag_probability)


def prioritise(analysis: Analysis, config: TriageConfig) -> TriageResult:
    if analysis.not_analysed or analysis.findings is None:
        return TriageResult(Priority.NOT_ANALYSED,
                            f"not analysed: {analysis.not_analysed or 'no findings'}", ())
    findings, quantities = analysis.findings, analysis.quantities
    volumes = dict(quantities.volume_ml_by_class) if quantities else {}
    total = quantities.total_ml if quantities else 0.0
    probabilities = dict(findings.probabilities)
    flags = flagged_classes(volumes, probabilities, config)

    critical = _critical_iph(volumes, findings.iph_location, config)
    if critical:
        return TriageResult(Priority.CRITICAL, critical, flags)
    if config.critical_total_ml is not None and total > config.critical_total_ml:
        return TriageResult(Priority.CRITICAL,
                            f"hemorrhage {total:.1f} mL in all > {config.critical_total_ml:g} mL", flags)
    if total > 0 and total >= config.high_volume_ml:
        return TriageResult(Priority.HIGH, f"hemorrhage {total:.1f} mL ({_by_class(volumes)})", flags)
    if probabilities:
        name, p = max(probabilities.items(), key=lambda kv: (kv[1], kv[0] == "any"))
        if p >= config.high_probability:
            return TriageResult(Priority.HIGH, f"probability of {_label(name)} {p:.2f} "
                                               f">= {config.high_probability:g}", flags)
    if total > 0:
        reason = f"hemorrhage {total:.1f} mL < {config.high_volume_ml:g} mL"
    else:
        reason = "no hemorrhage segmented"
    if probabilities:
        reason += f"; highest probability {max(probabilities.values()):.2f}"
    return TriageResult(Priority.ROUTINE, reason, flags)


def _critical_iph(volumes: dict[str, float], location: str | None, config: TriageConfig) -> str | None:
    iph = volumes.get("IPH", 0.0)
    label = "IPH"
    if config.undifferentiated_as_iph and volumes.get("ICH", 0.0) > 0:
        iph += volumes["ICH"]
        label = "IPH" if volumes.get("IPH", 0.0) > 0 else "ICH (subtype not told apart, judged as IPH)"
    if iph <= 0:
        return None
    if location == "infratentorial":
        where, known = "infratentorial", True
    elif location in SUPRATENTORIAL:
        where, known = "supratentorial", True
    else:
        where, known = config.unknown_location, False
    limit = (config.critical_infratentorial_iph_ml if where == "infratentorial"
             else config.critical_supratentorial_iph_ml)
    if iph <= limit:
        return None
    detail = f"{where} ({location})" if known else f"{where} (location not given)"
    return f"{label} {iph:.1f} mL {detail} > {limit:g} mL"


def _label(name: str) -> str:
    return "any hemorrhage" if name == "any" else name


def _by_class(volumes: dict[str, float]) -> str:
    parts = [f"{c} {volumes[c]:.1f} mL" for c in ALL_CLASSES if volumes.get(c, 0.0) > 0]
    return ", ".join(parts) or "no class"
