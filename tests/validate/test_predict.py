"""Per-row calls: undifferentiated engines answer "any" only, extra-axial classes count as SDH or EDH."""
from ichnode.config import TriageConfig
from ichnode.validate.predict import ignored_classes, predict

TRIAGE = TriageConfig(flag_volume_ml=0.1, flag_probability=0.5)


def test_classical_answers_any_only():
    volumes = {"ICH": 3.0}
    any_ = predict("any", ("ICH",), volumes, {}, TRIAGE)
    assert any_.positive and any_.score == 3.0 and any_.probability is None
    for row in ("IPH", "IVH", "SAH", "SDH", "EDH", "SDH or EDH"):
        assert predict(row, ("ICH",), volumes, {}, TRIAGE) is None


def test_probability_is_the_score_and_either_threshold_calls():
    p = predict("any", ("ICH",), {"ICH": 0.0}, {"any": 0.7}, TRIAGE)
    assert p.positive and p.score == 0.7 and p.volume_ml == 0.0
    p = predict("any", ("ICH",), {"ICH": 0.05}, {"any": 0.2}, TRIAGE)
    assert not p.positive and p.score == 0.2
    p = predict("any", ("ICH",), {"ICH": 0.1}, {"any": 0.2}, TRIAGE)
    assert p.positive  # volume at the flag threshold
    assert not predict("any", ("ICH",), {"ICH": 0.0}, {}, TriageConfig(flag_volume_ml=0.0)).positive


def test_partial_engine_with_extra_axial_class():
    classes = ("IPH", "EXTRA", "OEDEMA", "IVH")
    volumes = {"IPH": 0.0, "EXTRA": 12.0, "OEDEMA": 30.0, "IVH": 0.0}
    assert predict("any", classes, volumes, {}, TRIAGE).volume_ml == 12.0  # oedema is not blood
    assert predict("SDH or EDH", classes, volumes, {}, TRIAGE).positive
    assert predict("SDH", classes, volumes, {}, TRIAGE) is None
    assert predict("SAH", classes, volumes, {}, TRIAGE) is None
    assert not predict("IPH", classes, volumes, {}, TRIAGE).positive
    assert ignored_classes(classes, {}) == ["OEDEMA"]
