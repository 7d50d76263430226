"""A real Orthanc (the Debian package) as the PACS peer of tests and benchmarks.

Each instance gets its own configuration, storage and index folders under a work folder, loopback
ephemeral ports, and is ready when its REST API answers (polled, no fixed sleeps). Used by
tests/integration, tests/dicom/test_stow.py and benchmarks/
(`from tests.orthanc_peer import Orthanc`, with the repository root on sys.path).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from ichnode.loopback import port_open

REPO = Path(__file__).resolve().parents[1]
ROUTING_LUA = REPO / "deploy" / "orthanc" / "route-to-ichnode.lua"


def orthanc_binary() -> str | None:
    """Orthanc lives in /usr/sbin, which is not on every user's PATH."""
    return shutil.which("Orthanc") or next(
        (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.access(p, os.X_OK)), None)


def dicomweb_plugin() -> str | None:
    """The DICOMweb plugin's shared library, as the Debian package orthanc-dicomweb installs it."""
    try:
        listing = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True,
                                 text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        listing = []
    candidates = [p for p in listing if "DicomWeb" in p and ".so" in Path(p).name]
    # Prefer the plugins folder's link, then any versioned library.
    candidates.sort(key=lambda p: ("/plugins/" not in p, p))
    return next((p for p in candidates if os.path.exists(p)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """One Orthanc process; call start(), then stop() (tests: the `orthanc` fixture does both)."""

    def __init__(self, workdir: Path, *, aet: str = "ORTHANC", modalities: dict | None = None,
                 lua_scripts: tuple[Path, ...] = (), dicomweb: bool = False,
                 extra: dict | None = None):
        self.workdir = Path(workdir)
        self.aet = aet
        self.dicom_port, self.http_port = _free_port(), _free_port()
        self.binary = orthanc_binary()
        if self.binary is None:
            raise FileNotFoundError("Orthanc is not installed (Debian package orthanc)")
        config = {
            "Name": "ichnode-test",
            "DicomAet": aet,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomModalities": {name: {"AET": a, "Host": h, "Port": p}
                                for name, (a, h, p) in (modalities or {}).items()},
            "LuaScripts": [str(p) for p in lua_scripts],
            "StorageCompression": False,
            "HttpCompressionEnabled": False,
            "Plugins": [],
        }
        if dicomweb:
            plugin = dicomweb_plugin()
            if plugin is None:
                raise FileNotFoundError("the Orthanc DICOMweb plugin is not installed "
                                        "(Debian package orthanc-dicomweb)")
            config["Plugins"] = [plugin]
            config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
        config.update(extra or {})
        self.config = config
        self.config_path = self.workdir / "orthanc.json"
        self.log_path = self.workdir / "orthanc.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return self.url + "/dicom-web"

    def start(self, timeout: float = 60.0) -> "Orthanc":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config, indent=1))
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([self.binary, str(self.config_path)], stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}:\n{self.log()}")
            try:
                system = self.get("/system")
            except (OSError, urllib.error.URLError):
                system = None
            if system and system.get("DicomAet") == self.aet and port_open(self.dicom_port):
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"Orthanc did not answer /system within {timeout:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- REST ------------------------------------------------------------------------------
    def request(self, method: str, path: str, data: bytes | None = None,
                content_type: str | None = None, timeout: float = 30.0) -> tuple[int, dict, bytes]:
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def get(self, path: str):
        status, _, body = self.request("GET", path, timeout=5)
        if status != 200:
            raise urllib.error.URLError(f"GET {path}: HTTP {status}")
        return json.loads(body)

    def post(self, path: str, data: bytes, content_type: str = "application/octet-stream"):
        status, _, body = self.request("POST", path, data, content_type)
        if status != 200:
            raise RuntimeError(f"POST {path}: HTTP {status}: {body[:200]!r}")
        return json.loads(body) if body else None

    def upload(self, path: Path) -> dict:
        """Store one DICOM file through the REST API (POST /instances)."""
        return self.post("/instances", Path(path).read_bytes(), "application/dicom")

    def find_study(self, study_uid: str) -> str | None:
        """Orthanc's identifier of the study with that StudyInstanceUID, or None."""
        found = self.post("/tools/lookup", study_uid.encode(), "text/plain") or []
        return next((f["ID"] for f in found if f.get("Type") == "Study"), None)

    def study_series(self, study_uid: str) -> list[dict]:
        """The study's series (Orthanc's expanded JSON), empty when the study is not there."""
        study_id = self.find_study(study_uid)
        return self.get(f"/studies/{study_id}/series") if study_id else []

    def instance_file(self, instance_id: str) -> bytes:
        status, _, body = self.request("GET", f"/instances/{instance_id}/file")
        if status != 200:
            raise RuntimeError(f"GET /instances/{instance_id}/file: HTTP {status}")
        return body


