"""Readers for the three public head-CT hemorrhage data sets, as plain typed records (no torch).

* **RSNA 2019 Intracranial Hemorrhage Detection** (:func:`read_rsna`, :func:`rsna_hu`):
  ``stage_2_train.csv`` (``ID,Label``, ``ID`` = ``ID_<hex>_<subtype>``, six rows per image) and
  ``<dicom_dir>/ID_<hex>.dcm``. Subtypes map onto ichnode's classes: ``any`` -> any, ``epidural`` -> EDH,
  ``intraparenchymal`` -> IPH, ``intraventricular`` -> IVH, ``subarachnoid`` -> SAH, ``subdural`` -> SDH.
  The official CSV repeats some rows; identical repeats are accepted, conflicting ones are an error.
* **CQ500** (:func:`read_cq500`, :func:`cq500_series`): ``reads.csv`` with three readers' 0/1 reads
  ``R1:ICH .. R3:SAH``; the label of a subtype is the majority of the readers (2 of 3).
* **PhysioNet CT-ICH** (Hssayeni 2020; :func:`read_physionet`, :func:`load_physionet_case`):
  ``hemorrhage_diagnosis_raw_ct.csv`` (per-slice labels), ``ct_scans/NNN.nii`` (HU) and
  ``masks/NNN.nii`` (hemorrhage mask, any subtype).

**Missing image files.** By default a reader raises :class:`FileNotFoundError` naming how many files are
missing and the first few of them (a partial download is usually a mistake). With ``skip_missing=True``
the records without files are dropped instead (RSNA, PhysioNet) -- the caller can compare lengths; CQ500
studies without a folder are always kept, with ``folder=None`` (the labels are still useful).

Malformed CSVs raise :class:`ValueError` naming the file and the problem (missing column, a value that is
not 0/1, an unknown subtype, an RSNA image without all six subtype rows, ...).
"""
from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: ichnode's classes for slice-level classification, in the order of the vgg_wso head
RSNA_CLASSES = ("any", "EDH", "IPH", "IVH", "SAH", "SDH")
#: RSNA subtype name -> ichnode class
RSNA_SUBTYPES = {"any": "any", "epidural": "EDH", "intraparenchymal": "IPH", "intraventricular": "IVH",
                 "subarachnoid": "SAH", "subdural": "SDH"}
#: CQ500 read columns (``R<n>:<subtype>``); ICH is CQ500's "any hemorrhage"
CQ500_SUBTYPES = ("ICH", "IPH", "IVH", "SDH", "EDH", "SAH")
CQ500_READERS = ("R1", "R2", "R3")
#: PhysioNet CSV column -> ichnode class
PHYSIONET_SUBTYPES = {"Intraventricular": "IVH", "Intraparenchymal": "IPH", "Subarachnoid": "SAH",
                      "Epidural": "EDH", "Subdural": "SDH"}
PHYSIONET_CSV = "hemorrhage_diagnosis_raw_ct.csv"
_MAX_LISTED = 5


# --------------------------------------------------------------------------------------------- helpers
def _open_csv(path: Path, required: Iterable[str]) -> tuple[list[dict[str, str]], list[str]]:
    """All rows of ``path`` (header names stripped), after checking the ``required`` columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file, no header")
        header = [h.strip() for h in header]
        for col in required:
            if col not in header:
                raise ValueError(f"{path}: missing column {col!r} (columns: {', '.join(header)})")
        rows = []
        for line in reader:
            if not any(cell.strip() for cell in line):
                continue
            if len(line) != len(header):
                raise ValueError(f"{path}: line {reader.line_num} has {len(line)} fields, the header has "
                                 f"{len(header)}")
            rows.append({h: cell.strip() for h, cell in zip(header, line)})
    if not rows:
        raise ValueError(f"{path}: no data rows")
    return rows, header


def _binary(path: Path, value: str, what: str) -> int:
    """'0' / '1' (also '0.0' / '1.0') -> 0 / 1, else ValueError naming the file, the value and where."""
    try:
        number = float(value)
    except ValueError:
        number = None
    if number not in (0.0, 1.0):
        raise ValueError(f"{path}: {what}: value {value!r} is not 0/1")
    return int(number)


def _missing_error(kind: str, missing: list[Path]) -> FileNotFoundError:
    listed = ", ".join(str(p) for p in missing[:_MAX_LISTED])
    more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
    return FileNotFoundError(f"{len(missing)} {kind} missing: {listed}{more} "
                             "(pass skip_missing=True to drop them)")


# ------------------------------------------------------------------------------------------------ RSNA
@dataclass(frozen=True)
class RsnaSlice:
    """One RSNA slice: ``sop_id`` is ``ID_<hex>``, ``labels`` maps each of :data:`RSNA_CLASSES` to 0/1."""

    sop_id: str
    path: Path
    labels: dict[str, int]


def parse_rsna_id(value: str) -> tuple[str, str]:
    """``ID_<hex>_<subtype>`` -> (``ID_<hex>``, ichnode class); ValueError naming an unknown subtype."""
    sop_id, sep, subtype = value.strip().rpartition("_")
    if not sep or not sop_id.startswith("ID_") or sop_id == "ID":
        raise ValueError(f"RSNA ID {value!r} is not of the form ID_<hex>_<subtype>")
    if subtype not in RSNA_SUBTYPES:
        raise ValueError(f"RSNA ID {value!r}: unknown subtype {subtype!r} (expected one of "
                         f"{', '.join(RSNA_SUBTYPES)})")
    return sop_id, RSNA_SUBTYPES[subtype]


def read_rsna_labels(csv_path: str | Path) -> dict[str, dict[str, int]]:
    """``stage_2_train.csv`` -> {``ID_<hex>``: {class: 0/1}} in file order, every image with all six."""
    path = Path(csv_path)
    rows, _ = _open_csv(path, ("ID", "Label"))
    labels: dict[str, dict[str, int]] = {}
    for row in rows:
        sop_id, cls = parse_rsna_id(row["ID"])
        value = _binary(path, row["Label"], f"ID {row['ID']!r}")
        image = labels.setdefault(sop_id, {})
        if image.get(cls, value) != value:
            raise ValueError(f"{path}: ID {row['ID']!r} appears with both labels 0 and 1")
        image[cls] = value
    for sop_id, image in labels.items():
        absent = [c for c in RSNA_CLASSES if c not in image]
        if absent:
            raise ValueError(f"{path}: image {sop_id} has no row for {', '.join(absent)}")
        labels[sop_id] = {c: image[c] for c in RSNA_CLASSES}
    return labels


def read_rsna(csv_path: str | Path, dicom_dir: str | Path, *, skip_missing: bool = False) -> list[RsnaSlice]:
    """Labels of ``csv_path`` joined with ``<dicom_dir>/ID_<hex>.dcm``, in CSV order.

    A missing DICOM file raises FileNotFoundError (count + the first few paths) unless ``skip_missing``,
    in which case that slice is left out."""
    dicom_dir = Path(dicom_dir)
    if not dicom_dir.is_dir():
        raise FileNotFoundError(f"{dicom_dir}: DICOM directory not found")
    out: list[RsnaSlice] = []
    missing: list[Path] = []
    for sop_id, labels in read_rsna_labels(csv_path).items():
        path = dicom_dir / f"{sop_id}.dcm"
        if not path.is_file():
            missing.append(path)
            continue
        out.append(RsnaSlice(sop_id, path, labels))
    if missing and not skip_missing:
        raise _missing_error("RSNA DICOM files", missing)
    return out


def rsna_hu(path: str | Path, *, fix_pixel_representation: bool = True) -> np.ndarray:
    """One DICOM slice -> float32 (rows, columns) Hounsfield units (``pixel * RescaleSlope + Intercept``).

    ``fix_pixel_representation``: the known RSNA quirk -- some slices are stored unsigned 12-bit
    (``PixelRepresentation`` 0) with ``RescaleIntercept`` > -100, and their air wraps around to ~4096.
    Those are repaired the usual way (add 1000, subtract 4096 from values >= 4096, intercept -1000)."""
    import pydicom

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except Exception as e:  # noqa: BLE001 -- re-raised naming the file
        raise ValueError(f"{path}: cannot read DICOM pixel data ({e})") from e
    if pixels.ndim != 2:
        raise ValueError(f"{path}: expected one 2D slice, got pixel data of shape {pixels.shape}")
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    x = pixels.astype(np.float32)
    if (fix_pixel_representation and int(getattr(ds, "PixelRepresentation", 0)) == 0
            and int(getattr(ds, "BitsStored", 16)) == 12 and intercept > -100):
        x = x + 1000.0
        x[x >= 4096] -= 4096.0
        intercept = -1000.0
    return x * np.float32(slope) + np.float32(intercept)


# ----------------------------------------------------------------------------------------------- CQ500
@dataclass(frozen=True)
class Cq500Study:
    """One CQ500 study: ``labels`` = majority of the readers per subtype (:data:`CQ500_SUBTYPES`),
    ``votes`` = each reader's 0/1 per subtype (R1, R2, R3), ``folder`` None when not on disk."""

    name: str
    category: str
    folder: Path | None
    labels: dict[str, int]
    votes: dict[str, tuple[int, ...]]


def cq500_folder(root: str | Path, name: str) -> Path | None:
    """The study folder of ``name`` (``CQ500-CT-12``) under ``root``: ``CQ500-CT-12/``, or the layout the
    official zips unpack to, ``CQ500CT12 CQ500CT12/`` (or ``CQ500CT12/``); None if none exists."""
    root = Path(root)
    compact = name.replace("-", "")
    for candidate in (name, f"{compact} {compact}", compact):
        if (root / candidate).is_dir():
            return root / candidate
    matches = sorted(p for p in root.glob(f"{compact} *") if p.is_dir()) if root.is_dir() else []
    return matches[0] if matches else None


def read_cq500(reads_csv: str | Path, root: str | Path) -> list[Cq500Study]:
    """``reads.csv`` -> one :class:`Cq500Study` per row (file order); majority = at least 2 of 3 readers."""
    path = Path(reads_csv)
    required = ["name", "Category"] + [f"{r}:{s}" for r in CQ500_READERS for s in CQ500_SUBTYPES]
    rows, _ = _open_csv(path, required)
    out: list[Cq500Study] = []
    seen: set[str] = set()
    for row in rows:
        name = row["name"]
        if not name:
            raise ValueError(f"{path}: a row has an empty name")
        if name in seen:
            raise ValueError(f"{path}: study {name!r} appears twice")
        seen.add(name)
        votes = {s: tuple(_binary(path, row[f"{r}:{s}"], f"study {name!r}, column {r}:{s}")
                          for r in CQ500_READERS) for s in CQ500_SUBTYPES}
        labels = {s: int(2 * sum(v) > len(v)) for s, v in votes.items()}
        out.append(Cq500Study(name, row["Category"], cq500_folder(root, name), labels, votes))
    return out


def cq500_series(folder: str | Path) -> dict[Path, list[Path]]:
    """The DICOM series of a study folder: {directory: sorted ``*.dcm`` files}, directories sorted."""
    series: dict[Path, list[Path]] = {}
    for f in sorted(Path(folder).rglob("*")):
        if f.is_file() and f.suffix.lower() == ".dcm":
            series.setdefault(f.parent, []).append(f)
    return dict(sorted(series.items()))


# ------------------------------------------------------------------------------------------- PhysioNet
@dataclass(frozen=True)
class PhysionetSlice:
    """Labels of one slice. ``slice_number`` is the CSV's 1-based number = index ``slice_number - 1``
    along z of :func:`load_physionet_case`. ``labels`` maps any, IVH, IPH, SAH, EDH, SDH to 0/1; ``any``
    is 1 when a subtype is 1 or ``No_Hemorrhage`` is 0."""

    slice_number: int
    labels: dict[str, int]
    fracture: int


@dataclass(frozen=True)
class PhysionetCase:
    patient_number: int
    ct_path: Path
    mask_path: Path
    slices: list[PhysionetSlice] = field(default_factory=list)


def _nifti(directory: Path, number: int) -> Path | None:
    for stem in dict.fromkeys((f"{number:03d}", str(number))):
        for ext in (".nii", ".nii.gz"):
            if (directory / f"{stem}{ext}").is_file():
                return directory / f"{stem}{ext}"
    return None


def read_physionet(root: str | Path, *, skip_missing: bool = False) -> list[PhysionetCase]:
    """``<root>/hemorrhage_diagnosis_raw_ct.csv`` + ``ct_scans/NNN.nii`` + ``masks/NNN.nii`` -> cases
    sorted by patient number, slices sorted by slice number. A patient without a CT or mask file raises
    FileNotFoundError unless ``skip_missing`` (then that patient is left out)."""
    root = Path(root)
    path = root / PHYSIONET_CSV
    rows, _ = _open_csv(path, ["PatientNumber", "SliceNumber", *PHYSIONET_SUBTYPES, "No_Hemorrhage",
                                "Fracture_Yes_No"])
    by_patient: dict[int, dict[int, PhysionetSlice]] = {}
    for row in rows:
        try:
            patient, number = int(row["PatientNumber"]), int(row["SliceNumber"])
        except ValueError:
            raise ValueError(f"{path}: PatientNumber {row['PatientNumber']!r} / SliceNumber "
                             f"{row['SliceNumber']!r} is not an integer") from None
        if number < 1:
            raise ValueError(f"{path}: patient {patient}: SliceNumber {number} (numbers start at 1)")
        where = f"patient {patient}, slice {number}"
        sub = {cls: _binary(path, row[col], f"{where}, column {col}") for col, cls in PHYSIONET_SUBTYPES.items()}
        no_hem = _binary(path, row["No_Hemorrhage"], f"{where}, column No_Hemorrhage")
        labels = {"any": int(any(sub.values()) or not no_hem), **sub}
        slices = by_patient.setdefault(patient, {})
        if number in slices:
            raise ValueError(f"{path}: {where} appears twice")
        slices[number] = PhysionetSlice(number, labels,
                                        _binary(path, row["Fracture_Yes_No"], f"{where}, column Fracture_Yes_No"))
    out: list[PhysionetCase] = []
    missing: list[Path] = []
    for patient in sorted(by_patient):
        ct, mask = _nifti(root / "ct_scans", patient), _nifti(root / "masks", patient)
        if ct is None:
            missing.append(root / "ct_scans" / f"{patient:03d}.nii")
        if mask is None:
            missing.append(root / "masks" / f"{patient:03d}.nii")
        if ct is None or mask is None:
            continue
        slices = by_patient[patient]
        out.append(PhysionetCase(patient, ct, mask, [slices[n] for n in sorted(slices)]))
    if missing and not skip_missing:
        raise _missing_error("PhysioNet NIfTI files", missing)
    return out


def load_physionet_case(case: PhysionetCase) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """(hu float32 (z, y, x), mask bool (z, y, x), spacing_mm (dz, dy, dx)) of one case, via nibabel.

    Axis order: the NIfTI voxel array ``data[i, j, k]`` (scaled by ``scl_slope``/``scl_inter``) is
    returned as ``hu[k, j, i]`` -- z is the third voxel axis (slice ``SliceNumber`` = index
    ``SliceNumber - 1``), y the second, x the first. No reorientation to RAS is done: the stored voxel
    order is kept, so CT, mask and the CSV slice numbers stay aligned. Spacing is from ``get_zooms()``."""
    import nibabel as nib

    def load(p: Path):
        try:
            img = nib.load(str(p))
            data = np.asarray(img.get_fdata(dtype=np.float32))
        except Exception as e:  # noqa: BLE001 -- re-raised naming the file
            raise ValueError(f"{p}: cannot read NIfTI ({e})") from e
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise ValueError(f"{p}: expected a 3D volume, got shape {data.shape}")
        return img, data

    ct_img, ct = load(case.ct_path)
    _, mask = load(case.mask_path)
    if mask.shape != ct.shape:
        raise ValueError(f"{case.mask_path}: mask shape {mask.shape} differs from CT shape {ct.shape} "
                         f"({case.ct_path})")
    if case.slices and case.slices[-1].slice_number > ct.shape[2]:
        raise ValueError(f"{case.ct_path}: {ct.shape[2]} slices, but the CSV labels slice "
                         f"{case.slices[-1].slice_number} of patient {case.patient_number}")
    dx, dy, dz = (float(z) for z in ct_img.header.get_zooms()[:3])
    hu = np.ascontiguousarray(ct.transpose(2, 1, 0), dtype=np.float32)
    return hu, np.ascontiguousarray(mask.transpose(2, 1, 0) > 0), (dz, dy, dx)
