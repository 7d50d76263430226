"""Priority rules: one test per rule, thresholds from the triage: config."""
import numpy as np
import pytest

from ichnode.config import TriageConfig, load_config
from ichnode.domain import ABC2, Analysis, Findings, ModelInfo, Quantities
from ichnode.errors import ConfigError
from ichnode.domain import Priority
from ichnode.triage.priority import flagged_classes, prioritise

MODEL = ModelInfo("test-engine", "1.0")


def analysis(volumes=None, probabilities=None, location=None, classes=None):
    volumes = volumes or {}
    classes = tuple(classes or volumes)
    findings = Findings(model=MODEL, labels=np.zeros((2, 4, 4), np.uint8), segment_classes=classes,
                        probabilities=probabilities or {}, iph_location=location)
    total = sum(volumes.values())
    quantities = Quantities(volume_ml_by_class=volumes, total_ml=total, lesion_count=int(total > 0),
                            largest_lesion_ml=total, abc2=ABC2(10, 10, 10, 0) if total else None)
    return Analysis(volume=None, datasets=(), findings=findings, quantities=quantities)


CFG = TriageConfig()


def test_not_analysed_says_why():
    result = prioritise(Analysis(volume=None, datasets=(), not_analysed="contrast-enhanced"), CFG)
    assert result.priority is Priority.NOT_ANALYSED
    assert result.reason == "not analysed: contrast-enhanced"
    assert result.flags == ()


@pytest.mark.parametrize("ml, location, expected", [
    (31.0, "lobar", Priority.CRITICAL),
    (29.0, "lobar", Priority.HIGH),
    (31.0, "deep", Priority.CRITICAL),
    (16.0, "infratentorial", Priority.CRITICAL),
    (14.0, "infratentorial", Priority.HIGH),
    (16.0, "deep", Priority.HIGH),
])
def test_iph_volume_by_location(ml, location, expected):
    result = prioritise(analysis({"IPH": ml}, location=location), CFG)
    assert result.priority is expected
    if expected is Priority.CRITICAL:
        assert f"IPH {ml:.1f} mL" in result.reason
        assert ("infratentorial" if location == "infratentorial" else "supratentorial") in result.reason


def test_undifferentiated_ich_is_judged_as_iph_of_unknown_location():
    result = prioritise(analysis({"ICH": 40.0}), CFG)
    assert result.priority is Priority.CRITICAL
    assert "judged as IPH" in result.reason and "location not given" in result.reason
    assert result.flags == ("ICH",)
    off = TriageConfig(undifferentiated_as_iph=False)
    assert prioritise(analysis({"ICH": 40.0}), off).priority is Priority.HIGH
    infra = TriageConfig(unknown_location="infratentorial")
    assert prioritise(analysis({"ICH": 20.0}), infra).priority is Priority.CRITICAL
    assert prioritise(analysis({"ICH": 20.0}), CFG).priority is Priority.HIGH


def test_other_subtypes_never_count_as_iph():
    result = prioritise(analysis({"SDH": 45.0}), CFG)
    assert result.priority is Priority.HIGH
    assert "SDH 45.0 mL" in result.reason


def test_total_volume_rule_is_off_by_default_and_configurable():
    volumes = {"SDH": 35.0, "SAH": 20.0}
    assert prioritise(analysis(volumes), CFG).priority is Priority.HIGH
    result = prioritise(analysis(volumes), TriageConfig(critical_total_ml=50.0))
    assert result.priority is Priority.CRITICAL
    assert "55.0 mL in all > 50 mL" in result.reason


def test_small_volume_is_routine_and_threshold_is_inclusive():
    assert prioritise(analysis({"IPH": 0.5}), CFG).priority is Priority.ROUTINE
    assert prioritise(analysis({"IPH": 1.0}), CFG).priority is Priority.HIGH
    assert "0.5 mL < 1 mL" in prioritise(analysis({"IPH": 0.5}), CFG).reason


def test_probability_alone_makes_high():
    result = prioritise(analysis({}, probabilities={"any": 0.82, "SAH": 0.7}), CFG)
    assert result.priority is Priority.HIGH
    assert result.reason == "probability of any hemorrhage 0.82 >= 0.5"
    assert result.flags == ("SAH",)
    low = prioritise(analysis({}, probabilities={"any": 0.2}), CFG)
    assert low.priority is Priority.ROUTINE
    assert low.reason == "no hemorrhage segmented; highest probability 0.20"


def test_nothing_found_is_routine():
    result = prioritise(analysis({}), CFG)
    assert (result.priority, result.reason, result.flags) == (Priority.ROUTINE,
                                                              "no hemorrhage segmented", ())


def test_flags_follow_class_order_and_thresholds():
    flags = flagged_classes({"SDH": 2.0, "IPH": 0.05, "EDH": 0.2}, {"IVH": 0.9, "SAH": 0.1}, CFG)
    assert flags == ("IVH", "SDH", "EDH")


def test_sort_rank():
    ranks = sorted(Priority, key=lambda p: p.rank)
    assert ranks == [Priority.CRITICAL, Priority.HIGH, Priority.NOT_ANALYSED, Priority.ROUTINE]


def test_triage_config_from_yaml_and_its_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("triage:\n  critical_supratentorial_iph_ml: 25\n  unknown_location: infratentorial\n")
    config = load_config(path)
    assert config.triage.critical_supratentorial_iph_ml == 25.0
    assert config.triage.unknown_location == "infratentorial"
    path.write_text("triage:\n  high_probability: 1.5\n")
    with pytest.raises(ConfigError, match=r"triage\.high_probability.*between 0 and 1"):
        load_config(path)
    path.write_text("triage:\n  unknown_location: cerebellum\n")
    with pytest.raises(ConfigError, match=r"triage\.unknown_location"):
        load_config(path)
    path.write_text("web:\n  enabled: true\n")
    with pytest.raises(ConfigError, match=r"web\.users"):
        load_config(path)
    path.write_text("web:\n  users: [{name: ann, password_hash: hunter2}]\n")
    with pytest.raises(ConfigError, match=r"web\.users\[0\]\.password_hash") as info:
        load_config(path)
    assert "hunter2" not in str(info.value)
    path.write_text("notify:\n  webhook_url: ftp://x\n")
    with pytest.raises(ConfigError, match=r"notify\.webhook_url"):
        load_config(path)
