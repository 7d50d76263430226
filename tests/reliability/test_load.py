"""Concurrent load, bounded for CI: 8 DCMTK storescu senders at once (8 x 40 slices, 256 x 256)
into `ichnode serve` while it analyses the series already complete. Every instance is stored, every
job completes, every result arrives; the node's peak RSS is printed (the full-size run is
benchmarks/load.py)."""
from __future__ import annotations

from ichnode.synth import SynthSpec, write_series

from tests.helpers import require_tool
from tests.reliability.loadgen import copy_series, run_load

SENDERS, THICKNESS_MM, MATRIX = 8, 3.75, 256  # 40 slices each


def test_eight_concurrent_senders_while_analysing(tmp_path):
    require_tool("storescu")
    require_tool("storescp")
    truth = write_series(tmp_path / "source", SynthSpec(subtype="sdh", volume_ml=25,
                                                        thickness_mm=THICKNESS_MM, matrix=MATRIX,
                                                        seed=98))
    source = [tmp_path / "source" / f for f in truth["files"]]
    assert len(source) == 40
    series = [copy_series(source, tmp_path / f"copy{i}", i) for i in range(SENDERS + 1)]
    result = run_load(tmp_path / "run", series[1:], warmup=series[0], timeout_s=300)
    total = SENDERS * len(source)
    assert result.instances_acknowledged == total
    assert result.instances_recorded == total
    assert result.jobs_done == SENDERS + 1  # and the warm-up series'
    assert result.received_while_analysing > 0  # the streams really met a running analysis
    assert result.results_received >= (SENDERS + 1) * 3  # SEG, SR and key slices per series
    # A loose ceiling against leaks (e.g. holding every received dataset): the figure is printed.
    assert result.peak_rss_mb < 3000
    print(f"\nload: {SENDERS} senders x {len(source)} slices {MATRIX}x{MATRIX}: {total} instances "
          f"in {result.send_wall_s:.1f} s ({result.receive_mb_s:.1f} MB/s), all {SENDERS} jobs done "
          f"after {result.total_wall_s:.1f} s, {result.received_while_analysing} instances stored "
          f"while an analysis ran, peak RSS {result.peak_rss_mb:.0f} MB")
