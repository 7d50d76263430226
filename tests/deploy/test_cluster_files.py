"""The cluster-mode deployment files in deploy/cluster/: they parse and hang together.

No cluster, operator or container runtime here: the checks are what the files themselves can show
(YAML structure, selectors against pod labels, names and keys that must agree between objects,
the configuration the pods are given). Plain YAML only for the `cluster` section of ichnode's
configuration; the rest of that configuration is loaded by ichnode itself.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import urllib.parse
from pathlib import PurePosixPath

import pytest
import yaml

from ichnode.config import load_config, require_cluster
from tests.helpers import REPO

CLUSTER = REPO / "deploy" / "cluster"
K8S = CLUSTER / "k8s"
CONFIG_PATH = "/etc/ichnode/ichnode.yaml"  # where every pod and container reads its configuration
ICHNODE_IMAGE = "localhost/ichnode:cpu"  # the compose services built from deploy/Containerfile
URL_VARIABLES = ("ICHNODE_BROKER_URL", "ICHNODE_DATABASE_URL")
CREDENTIALS_IN_URL = re.compile(r"\b(?:amqps?|postgres(?:ql)?)://[^\s:/@]+:([^\s@/]+)@")


# --- reading the files ---------------------------------------------------------------------------

def k8s_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def objects(kind: str) -> list[dict]:
    return [doc for _, doc in k8s_documents() if doc.get("kind") == kind]


def the(kind: str) -> dict:
    (obj,) = objects(kind)
    return obj


def deployment(role: str) -> dict:
    found = [d for d in objects("Deployment") if role_of(container(d)["args"]) == role]
    assert len(found) == 1, f"{len(found)} Deployments with --role {role}"
    return found[0]


def container(dep: dict) -> dict:
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c


def pod_labels(dep: dict) -> dict:
    return dep["spec"]["template"]["metadata"]["labels"]


def role_of(args: list[str]) -> str | None:
    return args[args.index("--role") + 1] if "--role" in args else None


def config_arg(args: list[str]) -> str:
    return args[args.index("-c") + 1]


def selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # matchExpressions: not used here
    return bool(selector["matchLabels"]) and selector["matchLabels"].items() <= labels.items()


def configmap_config() -> dict:
    """The ichnode.yaml the ConfigMap holds, as the pods see it at CONFIG_PATH."""
    configmap = the("ConfigMap")
    return yaml.safe_load(configmap["data"][PurePosixPath(CONFIG_PATH).name])


def env_refs(c: dict) -> dict[str, tuple[str, str]]:
    """name -> (Secret name, key) for each environment variable read from a Secret."""
    refs = {}
    for var in c.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            refs[var["name"]] = (ref["name"], ref["key"])
    return refs


def compose() -> dict:
    return yaml.safe_load((CLUSTER / "compose.yaml").read_text())


def compose_roles() -> dict[str, list[str]]:
    """role -> names of the compose services that run ichnode in that role."""
    roles: dict[str, list[str]] = {}
    for name, service in compose()["services"].items():
        if service.get("image") == ICHNODE_IMAGE:
            roles.setdefault(role_of(service["command"]), []).append(name)
    return roles


# --- the tests -----------------------------------------------------------------------------------

def test_every_file_parses_and_names_no_namespace():
    paths = sorted(CLUSTER.rglob("*.yaml"))
    assert {p.relative_to(CLUSTER).as_posix() for p in paths} >= {
        "ichnode.yaml", "compose.yaml", "k8s/kustomization.yaml"}
    for path in paths:
        assert [doc for doc in yaml.safe_load_all(path.read_text()) if doc], path
    for name, doc in k8s_documents():
        assert doc.get("apiVersion") and doc.get("kind"), name
        if doc["kind"] != "Kustomization":
            assert doc["metadata"]["name"], name
            # Namespace-agnostic: `kubectl apply -k ... -n NAMESPACE` puts everything together,
            # and Secrets, ScaledObject and the pods must share a namespace.
            assert "namespace" not in doc["metadata"], name
    kinds = {doc["kind"] for _, doc in k8s_documents()}
    assert kinds >= {"ConfigMap", "PersistentVolumeClaim", "Deployment", "Service",
                     "PodDisruptionBudget", "ScaledObject", "TriggerAuthentication",
                     "RabbitmqCluster", "Cluster"}


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources)), resources
    manifests = {name for name, doc in k8s_documents() if doc["kind"] != "Kustomization"}
    assert set(resources) == manifests
    assert all((K8S / r).is_file() for r in resources)


def test_kubectl_kustomize_builds_every_object():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    expected = [doc for _, doc in k8s_documents() if doc["kind"] != "Kustomization"]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in built) == \
        sorted((d["kind"], d["metadata"]["name"]) for d in expected)


def test_selectors_match_the_pods_they_mean():
    deployments = objects("Deployment")
    assert sorted(role_of(container(d)["args"]) for d in deployments) == ["receiver", "worker"]
    for dep in deployments:
        name = dep["metadata"]["name"]
        assert selects(dep["spec"]["selector"], pod_labels(dep)), name
        # No Deployment's selector takes in the other's pods (they would fight over them).
        for other in deployments:
            if other is not dep:
                assert not selects(dep["spec"]["selector"], pod_labels(other)), name
    receiver, worker = deployment("receiver"), deployment("worker")
    (service,) = objects("Service")
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(receiver))
    assert not selects({"matchLabels": service["spec"]["selector"]}, pod_labels(worker))
    budgets = {}
    for pdb in objects("PodDisruptionBudget"):
        chosen = [d for d in deployments if selects(pdb["spec"]["selector"], pod_labels(d))]
        assert len(chosen) == 1, pdb["metadata"]["name"]
        budgets[role_of(container(chosen[0])["args"])] = pdb["spec"]
    assert set(budgets) == {"receiver", "worker"}
    assert budgets["receiver"].get("minAvailable") == 1
    assert budgets["receiver"]["minAvailable"] < receiver["spec"]["replicas"]  # drains can proceed


def test_receiver_deployment_service_and_probes():
    receiver = deployment("receiver")
    spec = receiver["spec"]
    assert spec["replicas"] == 2 and spec["strategy"]["type"] == "RollingUpdate"
    c = container(receiver)
    assert config_arg(c["args"]) == CONFIG_PATH and c["args"][0] == "serve"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"dicom": configmap_config()["node"]["port"]} == {"dicom": 11112}
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["tcpSocket"]["port"] == "dicom", probe
    (service,) = objects("Service")
    (port,) = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (11112, "dicom")
    # Associations in flight finish: a preStop pause, then a grace period longer than it.
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = spec["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= int(pre_stop[1]) + 60


def test_worker_deployment_gpu_and_probes():
    worker = deployment("worker")
    c = container(worker)
    assert config_arg(c["args"]) == CONFIG_PATH and c["args"][0] == "serve"
    assert "ports" not in c  # a worker listens nowhere
    for bound in ("requests", "limits"):
        assert c["resources"][bound]["nvidia.com/gpu"] == 1, bound
    probe_command = ["ichnode", "probe", "worker", "-c", CONFIG_PATH]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["exec"]["command"] == probe_command, probe
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 300
    # KEDA owns the replica count; a `replicas` here would reset it at every apply.
    assert "replicas" not in worker["spec"]


def test_scaled_object_scales_the_workers_on_the_analysis_queue():
    scaled = the("ScaledObject")["spec"]
    worker = deployment("worker")
    target = scaled["scaleTargetRef"]
    assert target["name"] == worker["metadata"]["name"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target.get("apiVersion", "apps/v1") == "apps/v1"
    assert scaled["minReplicaCount"] == 1 < scaled["maxReplicaCount"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == "ichnode.analyse"
    assert trigger["metadata"]["mode"] == "QueueLength" and int(trigger["metadata"]["value"]) >= 1
    # The URL comes from the TriggerAuthentication, never from the trigger itself.
    assert not {"host", "hostFromEnv"} & set(trigger["metadata"])
    assert trigger["authenticationRef"]["name"] == the("TriggerAuthentication")["metadata"]["name"]


def test_urls_come_from_the_operators_secrets_everywhere_alike():
    rabbitmq, postgres = the("RabbitmqCluster"), the("Cluster")
    assert rabbitmq["apiVersion"] == "rabbitmq.com/v1beta1" and rabbitmq["spec"]["replicas"] == 3
    assert postgres["apiVersion"] == "postgresql.cnpg.io/v1" and postgres["spec"]["instances"] == 3
    # The Secrets the operators write: <RabbitmqCluster>-default-user, <CNPG Cluster>-app.
    broker = (f"{rabbitmq['metadata']['name']}-default-user", "connection_string")
    database = (f"{postgres['metadata']['name']}-app", "uri")
    assert postgres["spec"]["bootstrap"]["initdb"]["database"] == "ichnode"
    for role in ("receiver", "worker"):
        c = container(deployment(role))
        refs = env_refs(c)
        assert refs["ICHNODE_BROKER_URL"] == broker, role
        assert refs["ICHNODE_DATABASE_URL"] == database, role
        inline = [v["name"] for v in c["env"] if "value" in v and v["name"] in URL_VARIABLES]
        assert inline == [], role
    (auth,) = the("TriggerAuthentication")["spec"]["secretTargetRef"]
    assert auth["parameter"] == "host" and (auth["name"], auth["key"]) == broker
    # No credentials in any manifest (the comments show URLs with PASS in the password's place)
    # or in the configuration the pods get.
    for path in K8S.glob("*.yaml"):
        passwords = CREDENTIALS_IN_URL.findall(path.read_text())
        assert set(passwords) <= {"PASS"}, path.name
    assert not {"broker_url", "database_url"} & set(configmap_config()["cluster"])


def test_shared_volume_is_read_write_many_and_mounted_at_data_dir():
    pvc = the("PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    data_dir = configmap_config()["data_dir"]
    for role in ("receiver", "worker"):
        dep = deployment(role)
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container(dep)["volumeMounts"]}
        assert volumes[mounts[data_dir]]["persistentVolumeClaim"]["claimName"] == \
            pvc["metadata"]["name"], role
        config_dir = str(PurePosixPath(CONFIG_PATH).parent)
        assert volumes[mounts[config_dir]]["configMap"]["name"] == \
            the("ConfigMap")["metadata"]["name"], role
        assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True, role


def test_configmap_config_is_cluster_mode_and_matches_ichnode_yaml(tmp_path, monkeypatch):
    config = configmap_config()
    assert config["spool"]["prepared_slots"] == 0
    assert isinstance(config["cluster"], dict)
    assert config["data_dir"] == "/var/lib/ichnode"
    # The same settings as deploy/cluster/ichnode.yaml (which compose.yaml mounts).
    assert config == yaml.safe_load((CLUSTER / "ichnode.yaml").read_text())
    # ichnode loads it as the pods do: the URLs from the environment (the operators' Secrets).
    monkeypatch.setenv("ICHNODE_BROKER_URL", "amqp://ichnode:secret@rabbitmq:5672/")
    monkeypatch.setenv("ICHNODE_DATABASE_URL", "postgresql://ichnode:secret@postgres:5432/ichnode")
    path = tmp_path / "ichnode.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_config(path)
    assert loaded.spool.prepared_slots == 0 and loaded.destinations
    assert loaded.database == "postgresql://ichnode:secret@postgres:5432/ichnode"
    for role in ("receiver", "worker"):
        require_cluster(loaded, role)


def test_compose_runs_the_same_topology():
    doc = compose()
    services = doc["services"]
    assert {"rabbitmq", "postgres"} <= set(services)
    roles = compose_roles()
    assert set(roles) == {"receiver", "worker"}
    assert len(roles["receiver"]) == 2 and len(roles["worker"]) == 2
    config = yaml.safe_load((CLUSTER / "ichnode.yaml").read_text())
    shared_volumes = set()
    for name in roles["receiver"] + roles["worker"]:
        service = services[name]
        assert service["command"][:3] == ["serve", "-c", CONFIG_PATH], name
        mounts = {target: source for source, target, *_ in
                  (v.split(":") for v in service["volumes"])}
        assert (CLUSTER / mounts[CONFIG_PATH]).resolve() == CLUSTER / "ichnode.yaml", name
        shared_volumes.add(mounts[config["data_dir"]])
        build = service["build"]
        assert (CLUSTER / build["context"] / build["dockerfile"]).resolve() == \
            REPO / "deploy" / "Containerfile", name
        assert set(URL_VARIABLES) <= set(service["environment"]), name
        for dependency in ("rabbitmq", "postgres"):
            assert service["depends_on"][dependency]["condition"] == "service_healthy", name
        assert service["healthcheck"]["test"], name
    # One volume, shared by every ichnode service, and declared as a named volume.
    (shared,) = shared_volumes
    assert shared in doc["volumes"]
    for name in roles["worker"]:
        assert services[name]["healthcheck"]["test"][1:4] == ["ichnode", "probe", "worker"], name
    host_ports = [p.split(":")[-2] for n in roles["receiver"] for p in services[n]["ports"]]
    assert len(host_ports) == len(set(host_ports)) == 2, host_ports
    assert services["rabbitmq"]["healthcheck"]["test"] and services["postgres"]["healthcheck"]["test"]


def test_compose_urls_match_the_broker_and_database_they_name():
    services = compose()["services"]
    rabbitmq = services["rabbitmq"]["environment"]
    postgres = services["postgres"]["environment"]
    for name in sum(compose_roles().values(), []):
        env = services[name]["environment"]
        broker = urllib.parse.urlsplit(env["ICHNODE_BROKER_URL"])
        assert broker.scheme == "amqp" and broker.hostname == "rabbitmq", name
        assert (broker.username, broker.password, broker.path.lstrip("/")) == (
            rabbitmq["RABBITMQ_DEFAULT_USER"], rabbitmq["RABBITMQ_DEFAULT_PASS"],
            rabbitmq["RABBITMQ_DEFAULT_VHOST"]), name
        database = urllib.parse.urlsplit(env["ICHNODE_DATABASE_URL"])
        assert database.scheme == "postgresql" and database.hostname == "postgres", name
        assert (database.username, database.password, database.path.lstrip("/")) == (
            postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]), name
