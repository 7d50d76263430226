"""ichnode.bench on tiny series (the real figures come from `ichnode bench models`; nothing timed here)."""
from __future__ import annotations

import io

import torch

from ichnode.bench import bench_models, print_bench_table, synthetic_series

torch.set_num_threads(1)


def test_synthetic_series_slice_counts() -> None:
    assert synthetic_series(12, 10.0, matrix=32).hu.shape == (12, 32, 32)  # padded by mirroring
    assert synthetic_series(5, 10.0, matrix=32).hu.shape == (5, 32, 32)  # centre crop


def test_bench_rows_and_table(tmp_path) -> None:
    rows = bench_models(["classical", "resnet50_cls"], device="cpu", threads=1,
                        series=(("tiny", 10, 10.0),), matrix=48)
    assert [(r["model"], r["device"], r["series"]) for r in rows] == [("classical", "cpu", "tiny"),
                                                                     ("resnet50_cls", "cpu", "tiny")]
    for r in rows:
        assert r["slices"] == 10 and r["matrix"] == 48 and r["seconds"] > 0
        assert r["numpy_peak_mb"] >= 0 and r["rss_peak_mb"] > 0 and r["cuda_peak_mb"] is None
    buf = io.StringIO()
    text = print_bench_table(rows, file=buf)
    assert buf.getvalue().strip() == text and "resnet50_cls" in text and "RSS peak MB" in text
