"""Inference benchmark of the engines: time and peak memory per model on two synthetic series.

``bench_models(["classical", "dense_unet", ...])`` runs each engine (as the node builds it, shipped
weights, ``ichnode.infer.deep``) on

* a 40-slice 5 mm series and
* a 300-slice 0.625 mm series,

both synthetic (``ichnode.synth`` phantom with a 25 mL IPH, matrix 512, 230 mm field of view). The
phantom covers about 150 mm of head; the series are brought to exactly 40 / 300 slices by mirroring
slices at the ends (realistic content; timings depend on the slice count, not on what is imaged there).

Per model, device and series: wall time of ``engine.analyse(volume)`` (after one warm-up call on a small
crop), slices per second and peak memory:

* ``numpy_peak_mb``: tracemalloc peak during the call (numpy and Python allocations; torch's CPU tensors are
  not traced);
* ``rss_peak_mb``: peak resident set size of the process during the call (Linux ``VmHWM`` after resetting it
  through ``/proc/self/clear_refs``; where that is not possible, ``resource.getrusage`` - the process peak so
  far - and ``rss_reset`` is False); ``rss_before_mb`` is the resident size just before the call (it holds
  the benchmark's own series: 300 x 512 x 512 float32 is 300 MiB), so the call's own peak is the difference;
* ``cuda_peak_mb``: ``torch.cuda.max_memory_allocated`` on CUDA runs.

CUDA runs are added when CUDA is available (``device=None``), or alone with ``device="cuda"``. Print the
rows with :func:`print_bench_table`. Timings are figures to read, never asserted in tests.
"""
from __future__ import annotations

import resource
import sys
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ichnode.config import EngineConfig
from ichnode.domain import Volume
from ichnode.synth import SynthSpec, make_phantom

SERIES = (("40 x 5 mm", 40, 5.0), ("300 x 0.625 mm", 300, 0.625))


def synthetic_series(n_slices: int, thickness_mm: float, matrix: int = 512, seed: int = 7) -> Volume:
    """A phantom series with exactly ``n_slices`` slices (mirrored at the ends, or centre-cropped)."""
    p = make_phantom(SynthSpec(subtype="iph", volume_ml=25.0, thickness_mm=thickness_mm, matrix=matrix, seed=seed))
    hu = p.hu
    if len(hu) < n_slices:
        extra = n_slices - len(hu)
        hu = np.pad(hu, ((extra // 2, extra - extra // 2), (0, 0), (0, 0)), mode="reflect")
    elif len(hu) > n_slices:
        start = (len(hu) - n_slices) // 2
        hu = hu[start:start + n_slices]
    v = p.to_volume()
    return replace(v, hu=np.ascontiguousarray(hu, dtype=np.float32))


def _rss_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _rss_peak_mb() -> float:
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _engine(name: str, config: EngineConfig):
    from ichnode.infer.classical import ClassicalEngine

    if name == "classical":
        return ClassicalEngine(config.classical)
    from ichnode.infer.deep import build_deep

    return build_deep(name, config)


def _devices(device: str | None) -> list[str]:
    import torch

    cuda = torch.cuda.is_available()
    if device is None:
        return ["cpu"] + (["cuda"] if cuda else [])
    if device == "cuda" and not cuda:
        raise RuntimeError("device cuda requested but CUDA is not available")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {device!r}")
    return [device]


def bench_models(models: Sequence[str], *, device: str | None = None, threads: int | None = None,
                 batch_size: int = 16, series: Sequence[tuple[str, int, float]] = SERIES, matrix: int = 512,
                 log=None) -> list[dict]:
    """One row per (model, device, series); see the module docstring for the columns."""
    import torch

    from ichnode.infer.classical import ClassicalEngine

    volumes = [(label, synthetic_series(n, t, matrix)) for label, n, t in series]
    rows = []
    for dev in _devices(device):
        cfg = EngineConfig(device=dev, threads=threads or EngineConfig().threads, batch_size=batch_size)
        for name in models:
            engine = _engine(name, cfg)
            fallback = name != "classical" and isinstance(engine, ClassicalEngine)
            warm = replace(volumes[0][1], hu=volumes[0][1].hu[:8])
            engine.analyse(warm)
            for label, vol in volumes:
                if dev == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                reset = _rss_reset()
                rss_before = _status_mb("VmRSS")
                tracemalloc.start()
                t0 = time.perf_counter()
                engine.analyse(vol)
                if dev == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - t0
                _, numpy_peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                row = {"model": name, "engine": engine.info.name, "fallback": fallback, "device": dev,
                       "series": label, "slices": int(vol.hu.shape[0]), "matrix": int(vol.hu.shape[1]),
                       "seconds": seconds, "slices_per_s": vol.hu.shape[0] / seconds,
                       "numpy_peak_mb": numpy_peak / 2**20, "rss_peak_mb": _rss_peak_mb(), "rss_reset": reset,
                       "rss_before_mb": rss_before,
                       "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else None,
                       "threads": torch.get_num_threads() if dev == "cpu" else None}
                rows.append(row)
                if log:
                    log(format_row(row))
            del engine
    return rows


_COLUMNS = (("model", "{}"), ("device", "{}"), ("series", "{}"), ("seconds", "{:.2f}"),
            ("slices_per_s", "{:.1f}"), ("numpy_peak_mb", "{:.0f}"), ("rss_peak_mb", "{:.0f}"),
            ("cuda_peak_mb", "{:.0f}"))


def format_row(row: dict) -> str:
    return "  ".join(f"{k}={'-' if row.get(k) is None else f.format(row[k])}" for k, f in _COLUMNS)


def print_bench_table(rows: Sequence[dict], file=None) -> str:
    """Plain-text table of :func:`bench_models` rows (printed to ``file``, default stdout; also returned)."""
    head = ("model", "device", "series", "time s", "slices/s", "numpy peak MB", "RSS peak MB (before)",
            "CUDA peak MB")
    body = []
    for r in rows:
        name = r["model"] + (" (fallback: classical)" if r.get("fallback") else "")
        body.append((name, r["device"], r["series"], f"{r['seconds']:.2f}", f"{r['slices_per_s']:.1f}",
                     f"{r['numpy_peak_mb']:.0f}", f"{r['rss_peak_mb']:.0f}" + ("" if r.get("rss_reset", True) else "*")
                     + ("" if r.get("rss_before_mb") is None else f" ({r['rss_before_mb']:.0f})"),
                     "-" if r.get("cuda_peak_mb") is None else f"{r['cuda_peak_mb']:.0f}"))
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip() for b in body]
    if any(not r.get("rss_reset", True) for r in rows):
        lines.append("* process peak so far (the peak could not be reset on this system)")
    text = "\n".join(lines)
    print(text, file=file or sys.stdout)
    return text
