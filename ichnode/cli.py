"""Command line: `ichnode serve | process | validate | synth | demo | status | rerun`."""
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
    serve.add_argument("--role", choices=["single", "receiver", "worker"], default="single",
                       help="single: the whole node in one process (default); receiver / worker: "
                            "cluster mode (the cluster: section, ichnode/cluster/)")
    probe = with_config(sub.add_parser("probe", help="exit 0 when this container's worker is alive "
                                                     "(Kubernetes liveness and readiness)"))
    probe.add_argument("role", choices=["worker"])

    process = with_config(sub.add_parser("process", help="offline: a folder of DICOM files in, "
                                                         "result objects out"))
    process.add_argument("input_dir", type=Path)
    process.add_argument("-o", "--out", type=Path, required=True)

    validate = with_config(sub.add_parser(
        "validate", help="acceptance test: run the configured engines on labelled studies, report "
                         "sensitivity, specificity and AUC with 95% CIs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Analyse every series of INPUT_DIR as the node would, match studies to --labels\n"
                    "(CQ500 reads, RSNA 2019 ID,Label, or study_uid,any[,iph,ivh,sah,sdh,edh]; detected\n"
                    "from the header) and write report.md, studies.csv, summary.json and roc_<row>.png\n"
                    "to --out. Exit 0: done; 1: no labelled study could be analysed; 2: bad input.",
        epilog="definitions:\n" + _validate_definitions()))
    validate.add_argument("input_dir", type=Path, help="folder of DICOM files (searched recursively)")
    validate.add_argument("--labels", type=Path, required=True, help="label file (CSV)")
    validate.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    validate.add_argument("--masks", type=Path, default=None,
                          help="folder of truth masks (NIfTI matched by grid, DICOM SEG by series) "
                               "for volume error")

    synth = sub.add_parser("synth", help="write a synthetic head CT series with truth.json")
    synth.add_argument("outdir", type=Path)
    synth.add_argument("--subtype", default="iph",
                       choices=["iph", "ivh", "sah", "sdh", "edh", "none"])
    synth.add_argument("--volume-ml", type=float, default=20.0)
    synth.add_argument("--thickness", type=float, default=None,
                       help="slice thickness in mm (phantom: default 5; --background: thick-slab "
                            "reformat of the thin series, default its own slices)")
    synth.add_argument("--matrix", type=int, default=512)
    synth.add_argument("--tilt", type=float, default=0.0, help="gantry tilt in degrees")
    synth.add_argument("--jpeg-lossless", action="store_true")
    synth.add_argument("--shape", default="regular", choices=["regular", "irregular"])
    synth.add_argument("--location", default="lobar", choices=["deep", "lobar", "infratentorial"])
    synth.add_argument("--seed", type=int, default=0)
    real = synth.add_argument_group("hemorrhage inserted into a real series (--background)")
    real.add_argument("--background", type=Path, default=None, metavar="DICOM_DIR",
                      help="insert the hemorrhage into this real head CT series (largest series of the folder)")
    real.add_argument("--region", default=None,
                      choices=["frontal", "parietal", "temporal", "sylvian", "basal", "lateral"],
                      help="SDH/EDH: frontal|parietal|temporal convexity; SAH: also sylvian|basal; "
                           "IVH: lateral (default: by seed). IPH uses --location")
    real.add_argument("--side", default=None, choices=["left", "right"], help="default: by seed")
    real.add_argument("--mirror", action="store_true", help="flip the finished case left-right")
    real.add_argument("--shift-mm", default="0,0,0", metavar="DX,DY,DZ",
                      help="move the lesion location (patient LPS mm)")
    real.add_argument("--mass-effect", action="store_true", help="push surrounding anatomy away")
    real.add_argument("--keep-enhancement", action="store_true",
                      help="keep the background's contrast enhancement (default: vessels and sinuses "
                           "brought to non-contrast density first)")

    demo = with_config(sub.add_parser("demo", help="start a node and a destination, send synthetic "
                                                   "series, print what came back"))
    demo.add_argument("--workdir", type=Path, default=Path("var/demo"))
    demo.add_argument("--subtypes", default="iph,sdh,edh,ivh,sah,none")

    status = with_config(sub.add_parser("status", help="jobs and their states"))
    status.add_argument("--json", action="store_true")

    rerun = with_config(sub.add_parser("rerun", help="analyse and send a job again"))
    rerun.add_argument("job", nargs="?", type=int)
    rerun.add_argument("--failed", action="store_true", help="every failed job")
    train = sub.add_parser("train", help="train a model (see ichnode/training/reproduce.sh)",
                           description="Train MODEL (name or seed: 000-004). Remaining arguments go to "
                           "the model's trainer; `ichnode train MODEL --help` lists them.")
    train.add_argument("model")
    train.add_argument("args", nargs=argparse.REMAINDER)
    evaluate = sub.add_parser("evaluate", help="evaluate a model with the papers' metrics",
                              description="2D classifiers (001, 003, 004): k-fold cross-validation on "
                              "labelled PNGs; 000 and 002: held-out synthetic phantoms.")
    evaluate.add_argument("model")
    evaluate.add_argument("args", nargs=argparse.REMAINDER)
    bench = sub.add_parser("bench", help="benchmarks that print figures")
    bench.add_argument("what", choices=["models"])
    bench.add_argument("--models", default=None,
                       help="comma list (default: classical and every network in the registry)")
    hashpw = sub.add_parser("hash-password", help="print a salted scrypt hash of a password for "
                                                  "web.users (reads it from stdin or a prompt)")
    hashpw.add_argument("--stdin", action="store_true", help="read the password from stdin")
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


def _on_stop_signal(stop) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop())


def cmd_serve(args, config) -> int:
    from ichnode.config import require_cluster
    from ichnode.exposure import warn

    if args.role != "single":
        try:
            require_cluster(config, args.role)
        except ConfigError as exc:
            print(f"ichnode: configuration error: {exc}", file=sys.stderr)
            return 2
    if args.role == "worker":
        from ichnode.cluster.worker import Worker

        worker = Worker(config)
        _on_stop_signal(worker.stop)
        print("ichnode worker consuming", flush=True)
        worker.run()
        return 0
    from ichnode.node import Node

    warn(config)  # listeners beyond loopback with empty allow-lists, unchecked TLS peers
    node = Node(config, role=args.role).start(port=args.port)
    stop = threading.Event()
    _on_stop_signal(stop.set)
    role = "" if args.role == "single" else f" ({args.role})"
    print(f"ichnode listening as {config.node.ae_title} on port {node.port}{role}", flush=True)
    if node.web is not None:
        print(f"worklist at {node.web.scheme}://{config.web.host}:{node.web.port}/",
              flush=True)
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


def _validate_definitions() -> str:
    import textwrap

    from ichnode.validate import DEFINITIONS  # plain text, imports nothing

    return "\n".join(textwrap.fill(item, 100, subsequent_indent="  ") for item in DEFINITIONS.splitlines())


def cmd_validate(args, config) -> int:
    from ichnode.validate.labels import LabelError, read_labels
    from ichnode.validate.report import print_summary
    from ichnode.validate.run import validate

    for path, what in ((args.input_dir, "input"), (args.masks, "--masks")):
        if path is not None and not path.is_dir():
            print(f"ichnode validate: {what} {path} is not a folder", file=sys.stderr)
            return 2
    try:
        labels = read_labels(args.labels)
    except LabelError as exc:
        print(f"ichnode validate: {exc}", file=sys.stderr)
        return 2
    run = validate(args.input_dir, labels, args.out, config, masks_dir=args.masks,
                   config_source=str(args.config or "<embedded default>"))
    print_summary(run)
    print(f"report: {args.out / 'report.md'}")
    return 0 if run.count("analysed") else 1


def cmd_synth(args, config) -> int:
    from ichnode.synth import SynthSpec, write_series

    if args.background is not None:
        return _synth_on_background(args)
    thickness = 5.0 if args.thickness is None else args.thickness
    spec = SynthSpec(subtype=args.subtype, volume_ml=args.volume_ml, thickness_mm=thickness,
                     matrix=args.matrix, tilt_deg=args.tilt, jpeg_lossless=args.jpeg_lossless,
                     shape=args.shape, location=args.location, seed=args.seed)
    truth = write_series(args.outdir, spec)
    print(f"wrote {truth['slices']} slices to {args.outdir}: {truth['subtype']} "
          f"{truth['volume_ml']:.2f} mL (truth.json)")
    return 0


def _synth_on_background(args) -> int:
    from ichnode.synth.insert import InsertSpec, load_background_volume, make_case, prepare_background
    from ichnode.synth.insert_writer import write_case

    if not args.background.is_dir():
        print(f"ichnode synth: {args.background} is not a folder", file=sys.stderr)
        return 2
    try:
        shift = tuple(float(v) for v in args.shift_mm.split(","))
        location = args.location if args.subtype == "iph" else args.region
        spec = InsertSpec(subtype=args.subtype, volume_ml=args.volume_ml, shape=args.shape, location=location,
                          side=args.side, seed=args.seed, mass_effect=args.mass_effect,
                          thickness_mm=args.thickness, mirror=args.mirror, shift_mm=shift,
                          remove_contrast=not args.keep_enhancement)
    except ValueError as exc:
        print(f"ichnode synth: {exc}", file=sys.stderr)
        return 2
    background = prepare_background(load_background_volume(args.background), spec.remove_contrast)
    truth = write_case(args.outdir, make_case(background, spec))
    where = truth.get("location") or "-"
    print(f"wrote {truth['slices']} slices to {args.outdir}: {truth['subtype']} {where} "
          f"{truth.get('side') or ''} truth {truth['volume_ml']:.2f} mL (target {truth['target_volume_ml']:g}), "
          f"contrast removed: {truth['contrast_removed']} (truth.json, truth_mask.nii.gz, truth_fraction.nii.gz)")
    return 0


def cmd_demo(args, config) -> int:
    import logging

    from ichnode.demo import run_demo
    from ichnode.log import setup_logging

    setup_logging(config.log_format, level=logging.WARNING)  # keep the demo's table readable

    return run_demo(args.workdir, [s.strip() for s in args.subtypes.split(",") if s.strip()],
                    config_path=args.config)


def cmd_status(args, config) -> int:
    from ichnode.status import print_status

    if not config.cluster.database_url and not config.db_path.exists():
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


def cmd_hash_password(args, config) -> int:
    import getpass

    from ichnode.web.auth import hash_password

    password = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass("Password: ")
    if not password:
        print("ichnode hash-password: empty password", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def cmd_train(args, config) -> int:
    from ichnode.models.registry import get

    spec = get(args.model)
    return _run_model_cli(spec.trainer, spec.name, args.args)


def cmd_evaluate(args, config) -> int:
    from ichnode.models.registry import get

    spec = get(args.model)
    return _run_model_cli(spec.evaluator, spec.name, args.args)


def _run_model_cli(module: str, model: str, argv: list[str]) -> int:
    """The registry names the training / evaluation module of each model; each has ``cli(model, argv)``."""
    import importlib

    return importlib.import_module(module).cli(model, argv)


def cmd_bench(args, config) -> int:
    from ichnode.bench import bench_models, print_bench_table

    from ichnode.models.registry import names

    models = [m for m in args.models.split(",") if m] if args.models else ["classical", *names()]
    print_bench_table(bench_models(models))
    return 0


def cmd_probe(args, config) -> int:
    from ichnode.cluster.worker import probe

    return 0 if probe() else 1


COMMANDS = {"serve": cmd_serve, "probe": cmd_probe, "process": cmd_process, "synth": cmd_synth, "demo": cmd_demo,
            "status": cmd_status, "rerun": cmd_rerun, "hash-password": cmd_hash_password,
            "train": cmd_train, "evaluate": cmd_evaluate, "bench": cmd_bench,
            "validate": cmd_validate}

if __name__ == "__main__":
    sys.exit(main())
