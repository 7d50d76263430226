"""Synthetic head CT generator: analytic head phantom with hemorrhage, written as DICOM + truth.

Test fixture source for the whole project. make_phantom builds the arrays; write_series writes a
CT series (CT0000.dcm, ...), truth.json and truth_mask.npz.
"""
from .dicom_writer import write_phantom, write_series
from .phantom import Phantom, SynthSpec, make_phantom
from .uids import series_uids

__all__ = ["Phantom", "SynthSpec", "make_phantom", "series_uids", "write_phantom", "write_series"]
