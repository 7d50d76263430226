"""The deployment files in deploy/: they parse, hang together, and hold the configuration they say.

No container runtime or cluster here: the checks are what can be verified without one (YAML and
JSON structure, ichnode configs loaded by ichnode itself, systemd-analyze, Orthanc started on the
compose Orthanc configuration).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ichnode.config import load_config
from tests.helpers import REPO
from tests.orthanc_peer import Orthanc, dicomweb_plugin, orthanc_binary

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"


def k8s_objects() -> list[dict]:
    objects = []
    for path in sorted(K8S.glob("*.yaml")):
        objects += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def by_kind(kind: str) -> list[dict]:
    return [doc for _, doc in k8s_objects() if doc.get("kind") == kind]


def test_deploy_config_loads_and_matches_the_compose_pacs():
    config = load_config(DEPLOY / "config" / "ichnode.yaml")
    orthanc = json.loads((DEPLOY / "orthanc" / "orthanc.json").read_text())
    assert str(config.data_dir) == "/var/lib/ichnode"
    (pacs,) = config.destinations
    assert (pacs.kind, pacs.ae_title, pacs.host, pacs.port) == (
        "dimse", orthanc["DicomAet"], "orthanc", orthanc["DicomPort"])
    assert orthanc["DicomAet"] in config.node.allowed_calling_aets
    modality = orthanc["DicomModalities"]["ichnode"]
    assert (modality["AET"], modality["Host"], modality["Port"]) == (
        config.node.ae_title, "ichnode", config.node.port)


def test_compose_has_both_services_volumes_and_mounted_config():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"ichnode", "orthanc"}
    assert set(compose["volumes"]) == {"ichnode-data", "orthanc-db"}
    mounts = {s: [v.split(":") for v in services[s]["volumes"]] for s in services}
    ichnode_targets = {target: source for source, target, *_ in mounts["ichnode"]}
    assert ichnode_targets["/var/lib/ichnode"] == "ichnode-data"
    assert (DEPLOY / ichnode_targets["/etc/ichnode/ichnode.yaml"]).resolve() == \
        (DEPLOY / "config" / "ichnode.yaml").resolve()
    orthanc_config = json.loads((DEPLOY / "orthanc" / "orthanc.json").read_text())
    orthanc_targets = {target: source for source, target, *_ in mounts["orthanc"]}
    # The Lua routing script is mounted where Orthanc's configuration looks for it.
    (lua_path,) = orthanc_config["LuaScripts"]
    assert (DEPLOY / orthanc_targets[lua_path]).resolve() == (DEPLOY / "orthanc" / "route-to-ichnode.lua")
    assert orthanc_targets[orthanc_config["StorageDirectory"]] == "orthanc-db"
    # Each file a service is built from or mounts exists.
    for name, service in services.items():
        build = service["build"]
        assert (DEPLOY / build["context"] / build.get("dockerfile", "Containerfile")).is_file(), name
        for source, *_ in mounts[name]:
            assert source in compose["volumes"] or (DEPLOY / source).is_file(), source
    assert services["ichnode"]["command"][-1] == "/etc/ichnode/ichnode.yaml"


def test_containerfile_has_cpu_and_cuda_variants_and_runs_unprivileged():
    text = (DEPLOY / "Containerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M)
    assert stages == ["build", "runtime"]
    assert re.search(r"^ARG VARIANT=cpu$", text, re.M)
    assert "cpu)" in text and "cuda)" in text
    assert re.search(r"^USER 10001", text, re.M)
    assert 'CMD ["serve", "-c", "/etc/ichnode/ichnode.yaml"]' in text
    # Every file the image copies from the build context exists.
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for part in source.split():
            assert (REPO / part).exists(), part


def test_k8s_objects_are_complete():
    objects = k8s_objects()
    assert {doc["kind"] for _, doc in objects} >= {"Deployment", "Service", "ConfigMap",
                                                   "PersistentVolumeClaim"}
    for name, doc in objects:
        assert doc.get("apiVersion") and doc.get("kind"), name
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"], name
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        n for n, d in objects if d["kind"] != "Kustomization")


def test_k8s_deployment_probes_volumes_and_config(tmp_path):
    (deployment,) = by_kind("Deployment")
    (service,) = by_kind("Service")
    (configmap,) = by_kind("ConfigMap")
    (pvc,) = by_kind("PersistentVolumeClaim")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["tcpSocket"]["port"] in ports, probe
    assert service["spec"]["ports"][0]["targetPort"] in ports
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/var/lib/ichnode"]]["persistentVolumeClaim"]["claimName"] == \
        pvc["metadata"]["name"]
    assert volumes[mounts["/etc/ichnode"]]["configMap"]["name"] == configmap["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert "nvidia.com/gpu" in (K8S / "deployment.yaml").read_text()
    # The ConfigMap's ichnode.yaml is a valid configuration that listens where the probes look.
    config_file = Path(container["args"][-1])
    assert config_file.parent == Path("/etc/ichnode")
    path = tmp_path / config_file.name
    path.write_text(configmap["data"][config_file.name])
    config = load_config(path)
    assert config.node.port == ports["dicom"] and str(config.data_dir) == "/var/lib/ichnode"


def _unit_for_this_machine(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's ichnode (verify checks it exists)."""
    text = (DEPLOY / "ichnode.service").read_text()
    exe = Path(sys.executable).with_name("ichnode")
    if not exe.exists():
        pytest.skip(f"{exe} is not installed")
    unit = tmp_path / "ichnode.service"
    unit.write_text(text.replace("/opt/ichnode/venv/bin/ichnode", str(exe)))
    return unit


def test_systemd_unit_settings():
    text = (DEPLOY / "ichnode.service").read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    assert settings["ExecStart"] == "/opt/ichnode/venv/bin/ichnode serve -c /etc/ichnode/ichnode.yaml"
    assert settings["Restart"] == "on-failure"
    assert settings["User"] == "ichnode" and settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict" and settings["StateDirectory"] == "ichnode"
    sysusers = (DEPLOY / "ichnode.sysusers.conf").read_text()
    assert re.search(r"^u ichnode ", sysusers, re.M)


def test_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = _unit_for_this_machine(tmp_path)
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if "ichnode.service" in line]
    assert result.returncode == 0 and complaints == [], result.stdout + result.stderr


def test_compose_orthanc_config_starts_a_real_orthanc(tmp_path):
    """The compose Orthanc configuration as it is, with only ports and paths moved under tmp_path."""
    if orthanc_binary() is None or dicomweb_plugin() is None:
        pytest.skip("Orthanc or its DICOMweb plugin is not installed (Debian packages orthanc, "
                    "orthanc-dicomweb)")
    config = json.loads((DEPLOY / "orthanc" / "orthanc.json").read_text())
    server = Orthanc(tmp_path / "orthanc", aet=config["DicomAet"])
    local = {key: server.config[key] for key in ("DicomPort", "HttpPort", "StorageDirectory",
                                                 "IndexDirectory", "RemoteAccessAllowed")}
    server.config = {**config, **local, "AuthenticationEnabled": False,
                     "LuaScripts": [str(DEPLOY / "orthanc" / "route-to-ichnode.lua")],
                     "Plugins": [dicomweb_plugin()]}
    try:
        server.start()
        assert "dicom-web" in server.get("/plugins")
        assert server.get("/modalities?expand")["ichnode"]["AET"] == "ICHNODE"
        assert server.get("/dicom-web/studies") == []
    finally:
        server.stop()
    assert not re.search(r"^E\d{4} ", server.log(), re.M), server.log()  # Orthanc logged no error
