"""Coded concepts used by the result writers.

Where a concept exists in pydicom's DICOM code dictionary (pydicom.sr.codedict, generated from
DICOM PS3.16) we take it from there, so that meaning and designator match the standard exactly.
Concepts that are not in the dictionary are written out by hand below, each with a note on where it
comes from. Concepts with no standard code live in a private coding scheme (designator starting
with "99", PS3.3 8.1), declared in the objects by CODING_SCHEME.
"""
from __future__ import annotations

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from ichnode.domain import ALL_CLASSES

NOTICE = "AI triage result - not for diagnostic use"  # ASCII only: goes into DICOM text VRs
BANNER_TEXT = "AI triage - not for diagnostic use"

# --- standard concepts found in pydicom's dictionary -------------------------------------------
MORPHOLOGICALLY_ABNORMAL_STRUCTURE = codes.SCT.MorphologicallyAbnormalStructure  # 49755003
HEMORRHAGE = codes.SCT.Hemorrhage  # 50960005, in CID 7151 (segmentation property types)
BRAIN = codes.SCT.Brain  # 12738006
BRAIN_VENTRICLE = codes.SCT.BrainVentricle  # 35764002
CT_OF_HEAD = Code("303653007", "SCT", "Computed tomography of head")
ALGORITHM_FAMILY_AI = codes.cid7162.ArtificialIntelligence  # DCM 123110
DEVICE_OBSERVER = codes.cid270.Device

VOLUME = codes.SCT.Volume  # 118565006
MAJOR_AXIS = codes.SCT.MajorAxis  # 131187009: ABC/2 "A", largest diameter on the key slice
PERPENDICULAR_AXIS = codes.SCT.PerpendicularAxis  # 131189007: "B", perpendicular to A
HEIGHT = codes.DCM.Height  # 121207: "C", cranio-caudal extent
RATIO = codes.SCT.Ratio  # 118586006
NUMBER_OF_LESIONS = Code("246206008", "SCT", "Number of lesions")  # in the dictionary (no CID)
PROBABILITY = codes.DCM.Probability  # 122157

UNIT_ML = Code("ml", "UCUM", "milliliter")  # UCUM unit; pydicom only lists compound ml units
UNIT_MM = codes.UCUM.Millimeter
UNIT_ONE = codes.UCUM.NoUnits  # "1"
UNIT_RATIO = codes.UCUM.Ratio  # "{ratio}"

# --- private concepts (no standard code known) ---------------------------------------------------
SCHEME = "99ICHNODE"
CODING_SCHEME = CodingSchemeIdentificationItem(
    designator=SCHEME, name="ichnode local concepts", responsible_organization="ichnode"
)


def _local(value: str, meaning: str) -> Code:
    return Code(value, SCHEME, meaning)


# --- hemorrhage classes --------------------------------------------------------------------------
# Codes as given in the project brief. Only 1386000 could be checked against pydicom's dictionary
# ("Intracranial hemorrhage (disorder)"); the others are not in it and are unverified here.
# IVH: the brief's 230706003 appears in public SNOMED CT code lists as "Hemorrhagic cerebral
# infarction", which would be a wrong coded meaning; until a verified IVH concept is supplied, IVH
# is post-coordinated from dictionary concepts: Hemorrhage (50960005) + finding site Brain
# ventricle (35764002).
CLASS_CODES: dict[str, Code] = {
    "ICH": Code("1386000", "SCT", "Intracranial hemorrhage"),
    "IPH": Code("274100004", "SCT", "Intracerebral hemorrhage"),
    "IVH": HEMORRHAGE,
    "SAH": Code("21454007", "SCT", "Subarachnoid hemorrhage"),
    "SDH": Code("35486000", "SCT", "Subdural hemorrhage"),
    "EDH": Code("68762000", "SCT", "Extradural hemorrhage"),
    # No SNOMED CT concept for extra-axial hemorrhage (subdural or epidural) was found in pydicom's
    # dictionary or verified elsewhere: a local concept, whose meaning says what it covers.
    "EXTRA": _local("EXTRAAXIAL", "Extra-axial hemorrhage (SDH or EDH, not told apart)"),
}
# Anatomic site per class (SEG anatomic region, SR finding site).
CLASS_SITES: dict[str, Code] = {c: BRAIN for c in ALL_CLASSES} | {"IVH": BRAIN_VENTRICLE,
                                                                   "EXTRA": codes.SCT.CranialCavity}
CLASS_NAMES: dict[str, str] = {
    "ICH": "Intracranial hemorrhage",
    "IPH": "Intraparenchymal hemorrhage",
    "IVH": "Intraventricular hemorrhage",
    "SAH": "Subarachnoid hemorrhage",
    "SDH": "Subdural hemorrhage",
    "EDH": "Epidural hemorrhage",
    "EXTRA": "Extra-axial hemorrhage (SDH or EDH, not told apart)",
}
assert set(CLASS_CODES) == set(ALL_CLASSES) == set(CLASS_NAMES)

USAGE_NOTICE = _local("NOTICE", "Usage notice")
NOT_FOR_DIAGNOSTIC_USE = _local("NOTDX", NOTICE)
ANALYSIS_STATUS = _local("STATUS", "Analysis status")
ANALYSED = _local("DONE", "Analysed")
NOT_ANALYSED = _local("NOTDONE", "Not analysed")
REASON_NOT_ANALYSED = _local("REASON", "Reason not analysed")
METHOD_ABC2 = _local("ABC2", "ABC/2 ellipsoid estimate (Kothari)")
METHOD_SEGMENTATION = _local("SEGVOX", "Voxel count of segmentation")
METHOD_MODEL_REGRESSION = _local("MODELREG", "Model regression estimate")
ABC2_RATIO = _local("ABC2RATIO", "ABC/2 volume to segmented volume ratio")
PROGNOSIS_PROBABILITY = _local("PROGNOSIS", "Prognosis probability (research only)")
IPH_LOCATION = _local("IPHLOC", "Intraparenchymal hemorrhage location")
IPH_LOCATIONS: dict[str, Code] = {
    "deep": codes.SCT.Deep,  # 795002, in the dictionary
    "lobar": _local("LOBAR", "Lobar"),
    "infratentorial": _local("INFRATENT", "Infratentorial"),
}


def ascii_text(text: object, max_len: int | None = None) -> str:
    """Text safe for DICOM's default repertoire (dciodvfy flags anything else), optionally cut to a
    VR's maximum length (LO: 64). Backslash is the multi-value separator, so it is replaced too."""
    out = str(text).encode("ascii", "replace").decode("ascii").replace("\\", "/")
    return out[:max_len] if max_len else out
