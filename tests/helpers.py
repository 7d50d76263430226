"""Test helpers: real processes on loopback with ephemeral ports and readiness polling.

Import them as `from tests.helpers import ...`; fixtures live in tests/conftest.py.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ichnode.loopback import LoggedProcess, free_port, port_open, wait_until  # noqa: F401 - re-exported

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian packages dcmtk / dicom3tools; .ci/run installs them)")
    return path


def write_config(path: Path, data_dir: Path, port: int, destinations: list[dict], **sections) -> Path:
    config = {"data_dir": str(data_dir), "log_format": "json",
              "node": {"ae_title": "ICHNODE", "host": "127.0.0.1", "port": port},
              "destinations": destinations,
              # 320 MB of prepared slots per test node; tests/store/test_slots.py and the crash
              # test turn them on
              "spool": {"prepared_slots": 0}}
    for key, value in sections.items():
        config.setdefault(key, {}).update(value) if isinstance(value, dict) else config.update({key: value})
    path.write_text(yaml.safe_dump(config))
    return path


Process = LoggedProcess


def start_storescp(start, folder: Path, port: int, aet: str = "DEST") -> Process:
    folder.mkdir(parents=True, exist_ok=True)
    proc = start([require_tool("storescp"), "--aetitle", aet, "--output-directory", str(folder),
                  "--accept-all", str(port)], folder.parent / f"storescp-{port}.log")
    wait_until(lambda: port_open(port), 20, what=f"storescp on port {port}")
    return proc


def start_ichnode(start, config_path: Path, port: int) -> Process:
    proc = start([sys.executable, "-m", "ichnode.cli", "serve", "-c", str(config_path)],
                 config_path.parent / "ichnode-serve.log")
    wait_until(lambda: port_open(port) or proc.proc.poll() is not None, 60, what="ichnode serve")
    if proc.proc.poll() is not None:
        raise RuntimeError("ichnode serve exited:\n" + proc.log())
    return proc


def dciodvfy_errors(path: Path) -> list[str]:
    result = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
