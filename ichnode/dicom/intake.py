"""What the C-STORE handler checks before it writes anything: pure, bytes in, verdict out.

`inspect_instance` decodes the dataset header as the peer sent it (pixels are never decoded) and
answers either an `Instance` (what the spool and the job store need) or a `Refused` with the named
DIMSE status and a reason for the log. It never raises: anything it cannot understand is refused.

Checks, in order:
- size: larger than node.max_instance_mb -> 0xA700 (out of resources); a deflated dataset counts
  at its inflated size, inflated a chunk at a time (a deflate bomb costs no memory);
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
import struct
import zlib
from dataclasses import dataclass
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import UID, ExplicitVRLittleEndian

from ichnode.dicom.rawwalk import read_top_level
from ichnode.dicom.status import StoreStatus

_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")
MB = 1024 * 1024
INFLATE_CHUNK = MB  # a deflated dataset is inflated this much at a time (inflated_head)
DEFLATED_HEADER_BYTES = 4 * MB  # the part of a deflated dataset the header is read from
SPECIFIC_CHARACTER_SET, SOP_CLASS, SOP_INSTANCE = 0x00080005, 0x00080016, 0x00080018
MODALITY, DESCRIPTION = 0x00080060, 0x0008103E
STUDY, SERIES, IMAGES_IN_ACQUISITION = 0x0020000D, 0x0020000E, 0x00201002
SAMPLES_PER_PIXEL, NUMBER_OF_FRAMES, ROWS, COLUMNS = 0x00280002, 0x00280008, 0x00280010, 0x00280011
BITS_ALLOCATED, PIXEL_DATA = 0x00280100, 0x7FE00010
_TAGS = {SPECIFIC_CHARACTER_SET, SOP_CLASS, SOP_INSTANCE, MODALITY, DESCRIPTION, STUDY, SERIES,
         IMAGES_IN_ACQUISITION, SAMPLES_PER_PIXEL, NUMBER_OF_FRAMES, ROWS, COLUMNS, BITS_ALLOCATED}


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
        ds, pixel_length = _read_header(stream, ts, max_bytes)
        sop_class = _text(ds, SOP_CLASS)
        ids = [_text(ds, STUDY), _text(ds, SERIES), _text(ds, SOP_INSTANCE)]
        if None in ids or sop_class is None:
            raise KeyError("UID")
        modality, expected = _text(ds, MODALITY), _positive(_text(ds, IMAGES_IN_ACQUISITION))
        description = str(ds.SeriesDescription) if DESCRIPTION in ds else None  # character set
        pixel_problem = _pixel_problem(ds, ts, pixel_length)
    except InflatesTooFar as exc:
        return Refused(StoreStatus.OUT_OF_RESOURCES, f"deflated dataset {exc}")
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


def split_part10(data: bytes) -> tuple[Dataset, bytes]:
    """(file meta, dataset bytes as encoded) of a DICOM Part 10 file; ValueError if it is not one."""
    fp = BytesIO(data)
    try:
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
    except Exception as exc:  # noqa: BLE001 - pydicom raises several kinds on damaged headers
        raise ValueError(f"not a DICOM Part 10 file ({type(exc).__name__})") from None
    if "TransferSyntaxUID" not in meta or "MediaStorageSOPClassUID" not in meta:
        raise ValueError("file meta without Transfer Syntax UID or Media Storage SOP Class UID")
    return meta, data[fp.tell():]


def inspect_file(path) -> Instance | Refused:
    """The same verdict for an instance the node spooled."""
    try:
        with open(path, "rb") as fh:
            meta, stream = split_part10(fh.read())
    except (OSError, ValueError) as exc:
        return Refused(StoreStatus.CANNOT_UNDERSTAND, f"unreadable file: {exc}")
    return inspect_instance(stream, str(meta.TransferSyntaxUID), str(meta.MediaStorageSOPClassUID),
                            max_bytes=len(stream))


class InflatesTooFar(ValueError):
    """A deflated dataset that inflates beyond node.max_instance_mb (a deflate bomb)."""


def inflated_head(stream: bytes, max_bytes: int) -> tuple[bytes, int]:
    """(the first DEFLATED_HEADER_BYTES of a deflated dataset, its whole inflated length).

    Inflated a chunk at a time and counted, never held whole: 1 MB of zeros deflated inflates to
    1 GB, and zlib.decompress would allocate all of it. Raises InflatesTooFar past max_bytes and
    ValueError on a stream that is not deflate."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    head, total, pending = b"", 0, stream
    try:
        while True:
            chunk = inflater.decompress(pending, INFLATE_CHUNK)
            pending = inflater.unconsumed_tail
            total += len(chunk)
            if total > max_bytes:
                raise InflatesTooFar(f"inflates beyond node.max_instance_mb ({max_bytes / MB:g} MB)")
            if len(head) < DEFLATED_HEADER_BYTES:
                head += chunk[:DEFLATED_HEADER_BYTES - len(head)]
            if not pending and (not chunk or inflater.eof):
                break
    except zlib.error as exc:
        raise ValueError(f"not a deflated dataset: {exc}") from None
    return head, total


def _read_header(stream: bytes, ts: UID, max_bytes: int) -> tuple[Dataset, int | None]:
    """The elements checked here, left raw (rawwalk.py: pydicom's reader cost 0.3 ms per CT
    header), and the value length of Pixel Data (None: absent). Reading stops at Pixel Data: its
    bytes are neither copied nor decoded."""
    total = len(stream)
    if ts.is_deflated:
        (stream, total), ts = inflated_head(stream, max_bytes), UID(ExplicitVRLittleEndian)
    found, pixels = read_top_level(stream, ts.is_implicit_VR, ts.is_little_endian, _TAGS, PIXEL_DATA)
    ds = Dataset(found)
    if pixels is None:
        return ds, None
    position, size = pixels
    length = struct.unpack_from("<L" if ts.is_little_endian else ">L", stream, position + size - 4)[0]
    if length == 0xFFFFFFFF:  # encapsulated: its length is only known by walking the fragments
        return ds, length
    return ds, min(length, total - position - size)


def _pixel_problem(ds: Dataset, ts: UID, pixel_length: int | None) -> str | None:
    if pixel_length is None:
        return "no Pixel Data"
    if ts.is_compressed:
        return None  # encapsulated: the length is only known once decoded
    if pixel_length == 0xFFFFFFFF:
        return "encapsulated Pixel Data in a native transfer syntax"
    endian = "<" if ts.is_little_endian else ">"
    rows, cols, bits = (_us(ds, tag, endian) for tag in (ROWS, COLUMNS, BITS_ALLOCATED))
    samples = _us(ds, SAMPLES_PER_PIXEL, endian, default=1)
    frames = _positive(_text(ds, NUMBER_OF_FRAMES)) or 1
    if min(rows, cols, samples, frames, bits) < 1:
        return "Rows, Columns, SamplesPerPixel, NumberOfFrames or BitsAllocated is zero"
    pixels = rows * cols * samples * frames
    needed = (pixels + 7) // 8 if bits == 1 else pixels * ((bits + 7) // 8)
    if pixel_length < needed:
        return f"Pixel Data has {pixel_length} bytes; {rows} x {cols} x {samples} x {frames} at " \
               f"{bits} bits need {needed} (truncated instance)"
    return None


def _text(ds: Dataset, tag: int) -> str | None:
    """A text element's value as sent (UI, CS, IS), or None when absent or empty."""
    element = ds.get_item(tag)
    if element is None or element.value is None:
        return None
    value = element.value
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    return text.rstrip("\x00 ") or None


def _us(ds: Dataset, tag: int, endian: str, default: int | None = None) -> int:
    element = ds.get_item(tag)
    if element is None or element.value is None:
        if default is None:
            raise KeyError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) is missing")
        return default
    value = element.value
    return struct.unpack(endian + "H", value)[0] if isinstance(value, bytes) else int(value)


def _positive(text: str | None) -> int | None:
    try:
        value = int(text)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None
