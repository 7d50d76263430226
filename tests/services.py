"""Real PostgreSQL and RabbitMQ servers from the Debian packages, each started privately for a test
session in a temporary folder on free ports (initdb + postgres; rabbitmq-server with its own node
name, Mnesia and Erlang port mapper), polled until they answer, and stopped at the end. Run as root
(CI), the servers run as their Debian system users, as they refuse or should not run as root.
A test that needs one skips with a message when the package is not installed."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_until


def _as(user: str) -> list[str]:
    """The prefix that runs a command as the service's system user when we are root."""
    return ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []


def _own(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user)


def _binary(pattern: str, package: str) -> str:
    found = sorted(glob.glob(pattern))
    if not found:
        pytest.skip(f"{package} is not installed (apt-get install {package}; scripts/setup --test does)")
    return found[-1]


class PostgreSQL:
    """initdb into a temporary folder (trust authentication, loopback only), postgres on a free port."""

    def __init__(self):
        bindir = Path(_binary("/usr/lib/postgresql/*/bin/postgres", "postgresql")).parent
        self.folder = Path(tempfile.mkdtemp(prefix="ichnode-pg-"))
        _own(self.folder, "postgres")
        self.port = free_port()
        subprocess.run([*_as("postgres"), str(bindir / "initdb"), "-D", str(self.folder / "data"),
                        "-A", "trust", "-U", "ichnode", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, cwd=self.folder)
        self.process = subprocess.Popen(
            [*_as("postgres"), str(bindir / "postgres"), "-D", str(self.folder / "data"), "-p", str(self.port),
             "-k", str(self.folder), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.folder)
        wait_until(self._answers, 60, what="PostgreSQL to accept connections")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://ichnode@127.0.0.1:{self.port}/{database}"

    def _answers(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url(), connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # fast shutdown
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


class RabbitMQ:
    """rabbitmq-server with a node name, ports, Mnesia and logs of its own (guest on loopback)."""

    def __init__(self):
        sbin = Path(_binary("/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server", "rabbitmq-server")).parent
        self.folder = Path(tempfile.mkdtemp(prefix="ichnode-rmq-"))
        _own(self.folder, "rabbitmq")
        self.port, dist, self.epmd = free_port(), free_port(), free_port()
        self.node = f"ichnode{self.port}@localhost"
        env = {"HOME": str(self.folder), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "RABBITMQ_NODENAME": self.node, "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
               "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(dist),
               "ERL_EPMD_PORT": str(self.epmd), "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
               "RABBITMQ_LOG_BASE": str(self.folder / "log"),
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
               "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq"),
               "RABBITMQ_PID_FILE": str(self.folder / "pid")}
        self.process = subprocess.Popen(
            [*_as("rabbitmq"), "env", *[f"{k}={v}" for k, v in env.items()], str(sbin / "rabbitmq-server")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.folder, start_new_session=True)
        wait_until(self._answers, 120, interval=0.5, what="RabbitMQ to accept AMQP connections")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _answers(self) -> bool:
        import kombu

        try:
            with kombu.Connection(self.url, connect_timeout=2) as connection:
                connection.connect()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
        # The Erlang port mapper daemonised itself out of the process group.
        for epmd in glob.glob("/usr/lib/erlang/erts-*/bin/epmd"):
            subprocess.run([epmd, "-port", str(self.epmd), "-kill"], capture_output=True, timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)
