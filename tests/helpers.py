"""Test helpers: real processes on loopback with ephemeral ports and readiness polling.

Import them as `from tests.helpers import ...`; fixtures live in tests/conftest.py.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ichnode.loopback import free_port, port_open, wait_until  # noqa: F401 - re-exported

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
              "destinations": destinations}
    for key, value in sections.items():
        config.setdefault(key, {}).update(value) if isinstance(value, dict) else config.update({key: value})
    path.write_text(yaml.safe_dump(config))
    return path


class Process:
    """A background process whose output goes to a log file kept with the test's tmp_path."""

    def __init__(self, args: list[str], log_path: Path, env: dict | None = None):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


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
