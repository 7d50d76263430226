"""Named DIMSE statuses returned by the C-STORE handler."""
import enum


class StoreStatus(enum.IntEnum):
    SUCCESS = 0x0000
    # PS3.7 C.4.1.1.2 general status "Duplicate SOP Instance": the UID is already held under
    # another series; the first series keeps its instance.
    DUPLICATE_SOP_INSTANCE = 0x0111
    OUT_OF_RESOURCES = 0xA700  # could not keep the instance (disk full, write error)
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000  # unreadable dataset or missing identifying attributes
