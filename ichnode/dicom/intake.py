"""What the C-STORE handler checks before it writes anything: pure, bytes in, verdict out.

`inspect_instance` decodes the dataset header as the peer sent it (pixels are never decoded) and
answers either an `Instance` (what the spool and the job store need) or a `Refused` with the named
DIMSE status and a reason for the log. It never raises: anything it cannot understand is refused.

Checks, in order:
- size: larger than node.max_instance_mb -> 0xA700 (out of resources);
- decodable, with Study / Series / SOP Instance UIDs -> else 0xC000 (cannot understand);
- the UIDs are DICOM UIDs (digits and dots, at most 64 characters): a UID with path characters or
  letters is refused with 0xC000 rather than stored under a name it chose;
- SOP Class UID equals the presentation context's abstract syntax -> else 0xA900;
- Pixel Data present and, for native (uncompressed) transfer syntaxes, at least as long as
  Rows x Columns x samples x frames x bits needs -> else 0xC000 (a truncated instance is refused
  while the sender still has it, instead of failing the whole series later).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from io import BytesIO

from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID
from pynetdicom.dsutils import decode

from ichnode.dicom.status import StoreStatus

_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")
MB = 1024 * 1024


@dataclass(frozen=True)
class Instance:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class: str
    modality: str | None
    description: str | None
    expected_count: int | None


@dataclass(frozen=True)
class Refused:
    status: StoreStatus
    reason: str


def valid_uid(uid: str) -> bool:
    return len(uid) <= 64 and _UID_RE.fullmatch(uid) is not None


def inspect_instance(stream: bytes, transfer_syntax: str, context_sop_class: str,
                     max_bytes: int) -> Instance | Refused:
    """Verdict on one received dataset (encoded without file meta, in transfer_syntax)."""
    if len(stream) > max_bytes:
        return Refused(StoreStatus.OUT_OF_RESOURCES,
                       f"dataset of {len(stream) / MB:.1f} MB exceeds node.max_instance_mb "
                       f"({max_bytes / MB:g} MB)")
    try:
        ts = UID(transfer_syntax)
        ds = decode(BytesIO(stream), ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)
        sop_class = str(ds.SOPClassUID)
        ids = [str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)]
        modality, description = _text(ds, "Modality"), _text(ds, "SeriesDescription")
        expected = _int(ds, "ImagesInAcquisition")
        pixel_problem = _pixel_problem(ds, ts)
    except Exception as exc:  # noqa: BLE001 - the handler's boundary: whatever fails to decode is refused
        return Refused(StoreStatus.CANNOT_UNDERSTAND,
                       f"unreadable dataset or missing UIDs ({type(exc).__name__})")
    names = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    for name, uid in zip(names, ids):
        if not valid_uid(uid):
            return Refused(StoreStatus.CANNOT_UNDERSTAND,
                           f"{name} is not a DICOM UID (digits and dots, at most 64 characters)")
    if sop_class != str(context_sop_class):
        return Refused(StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS,
                       f"SOP Class UID {sop_class[:64]} does not match the presentation context "
                       f"{context_sop_class}")
    if pixel_problem:
        return Refused(StoreStatus.CANNOT_UNDERSTAND, pixel_problem)
    return Instance(ids[0], ids[1], ids[2], sop_class, modality, description, expected)


def inspect_file(path) -> Instance | Refused:
    """The same verdict for an instance the node spooled (file meta as filemeta.py writes it)."""
    try:
        meta = read_file_meta_info(path)
        with open(path, "rb") as fh:
            # Preamble and prefix (132 bytes), the group length element (12), then the group.
            fh.seek(132 + 12 + int(meta.FileMetaInformationGroupLength))
            stream = fh.read()
        syntax, sop_class = str(meta.TransferSyntaxUID), str(meta.MediaStorageSOPClassUID)
    except Exception as exc:  # noqa: BLE001 - a damaged file is a verdict, not a crash
        return Refused(StoreStatus.CANNOT_UNDERSTAND, f"unreadable file meta ({type(exc).__name__})")
    return inspect_instance(stream, syntax, sop_class, max_bytes=len(stream))


def _pixel_problem(ds, ts: UID) -> str | None:
    if "PixelData" not in ds:
        return "no Pixel Data"
    if ts.is_compressed:
        return None  # encapsulated: the length is only known once decoded
    rows, cols = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel") or 1)
    frames = int(ds.get("NumberOfFrames") or 1)
    bits = int(ds.BitsAllocated)
    if min(rows, cols, samples, frames, bits) < 1:
        return "Rows, Columns, SamplesPerPixel, NumberOfFrames or BitsAllocated is zero"
    pixels = rows * cols * samples * frames
    needed = (pixels + 7) // 8 if bits == 1 else pixels * ((bits + 7) // 8)
    have = len(ds.PixelData)
    if have < needed:
        return f"Pixel Data has {have} bytes; {rows} x {cols} x {samples} x {frames} at {bits} bits " \
               f"need {needed} (truncated instance)"
    return None


def _text(ds, keyword: str) -> str | None:
    value = ds.get(keyword)
    return str(value) if value not in (None, "") else None


def _int(ds, keyword: str) -> int | None:
    try:
        value = int(ds.get(keyword))
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None
