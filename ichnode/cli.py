"""Command line: `ichnode serve | process | synth | demo | status | rerun`."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ichnode import __version__
from ichnode.errors import ConfigError


def _setup_argparser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ichnode",
        description="ICH triage DICOM node. AI triage tool: results are not for diagnostic use.")
    parser.add_argument("--version", action="version", version=f"ichnode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p):
        p.add_argument("-c", "--config", type=Path, default=None,
                       help="YAML configuration (default: the embedded config/ichnode.yaml)")
        return p

    serve = with_config(sub.add_parser("serve", help="run the DICOM node"))
    serve.add_argument("--port", type=int, default=None, help="override node.port")

    process = with_config(sub.add_parser("process", help="offline: a folder of DICOM files in, "
                                                         "result objects out"))
    process.add_argument("input_dir", type=Path)
    process.add_argument("-o", "--out", type=Path, required=True)

    synth = sub.add_parser("synth", help="write a synthetic head CT series with truth.json")
    synth.add_argument("outdir", type=Path)
    synth.add_argument("--subtype", default="iph",
                       choices=["iph", "ivh", "sah", "sdh", "edh", "none"])
    synth.add_argument("--volume-ml", type=float, default=20.0)
    synth.add_argument("--thickness", type=float, default=5.0, help="slice thickness in mm")
    synth.add_argument("--matrix", type=int, default=512)
    synth.add_argument("--tilt", type=float, default=0.0, help="gantry tilt in degrees")
    synth.add_argument("--jpeg-lossless", action="store_true")
    synth.add_argument("--shape", default="regular", choices=["regular", "irregular"])
    synth.add_argument("--location", default="lobar", choices=["deep", "lobar", "infratentorial"])
    synth.add_argument("--seed", type=int, default=0)

    demo = sub.add_parser("demo", help="start a node and a destination, send synthetic series, "
                                       "print what came back")
    demo.add_argument("--workdir", type=Path, default=Path("var/demo"))
    demo.add_argument("--subtypes", default="iph,sdh,edh,ivh,sah,none")

    status = with_config(sub.add_parser("status", help="jobs and their states"))
    status.add_argument("--json", action="store_true")

    rerun = with_config(sub.add_parser("rerun", help="analyse and send a job again"))
    rerun.add_argument("job", nargs="?", type=int)
    rerun.add_argument("--failed", action="store_true", help="every failed job")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _setup_argparser().parse_args(argv)
    from ichnode.config import load_config
    from ichnode.log import setup_logging

    try:
        config = load_config(getattr(args, "config", None))
    except ConfigError as exc:
        print(f"ichnode: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_format)
    return COMMANDS[args.command](args, config)


def cmd_serve(args, config) -> int:
    from ichnode.node import Node

    node = Node(config).start(port=args.port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"ichnode listening as {config.node.ae_title} on port {node.port}", flush=True)
    stop.wait()
    node.stop()
    return 0


def cmd_process(args, config) -> int:
    from ichnode.offline import process_folder, print_process_table

    if not args.input_dir.is_dir():
        print(f"ichnode: {args.input_dir} is not a folder", file=sys.stderr)
        return 2
    rows = process_folder(args.input_dir, args.out, config)
    print_process_table(rows)
    return 0


def cmd_synth(args, config) -> int:
    from ichnode.synth import SynthSpec, write_series

    spec = SynthSpec(subtype=args.subtype, volume_ml=args.volume_ml, thickness_mm=args.thickness,
                     matrix=args.matrix, tilt_deg=args.tilt, jpeg_lossless=args.jpeg_lossless,
                     shape=args.shape, location=args.location, seed=args.seed)
    truth = write_series(args.outdir, spec)
    print(f"wrote {truth['slices']} slices to {args.outdir}: {truth['subtype']} "
          f"{truth['volume_ml']:.2f} mL (truth.json)")
    return 0


def cmd_demo(args, config) -> int:
    from ichnode.demo import run_demo

    return run_demo(args.workdir, [s.strip() for s in args.subtypes.split(",") if s.strip()])


def cmd_status(args, config) -> int:
    from ichnode.status import print_status

    if not config.db_path.exists():
        print(f"no job store at {config.db_path}: the node has not received anything yet")
        return 0
    print_status(config, as_json=args.json)
    return 0


def cmd_rerun(args, config) -> int:
    from ichnode.status import rerun

    if args.job is None and not args.failed:
        print("ichnode rerun: give a JOB id or --failed", file=sys.stderr)
        return 2
    return rerun(config, args.job, args.failed)


COMMANDS = {"serve": cmd_serve, "process": cmd_process, "synth": cmd_synth, "demo": cmd_demo,
            "status": cmd_status, "rerun": cmd_rerun}

if __name__ == "__main__":
    sys.exit(main())
