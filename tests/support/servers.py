# SPDX-License-Identifier: Apache-2.0
"""Throwaway PostgreSQL and Redis servers for the test run, on loopback ports (``free_port``)."""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# The ports free_port hands out lie below the kernel's ephemeral range, from which bind(0) and
# every outgoing connection draw theirs: no client socket can take a port between its pick and the
# server binding it. And each pytest-xdist worker draws from a block of its own (a serial run from
# the first), so two workers never pick the same port for servers they start at the same moment.
PORTS_FLOOR = 10000
PORTS_PER_BLOCK = 2000


def xdist_worker() -> int | None:
    """This process's pytest-xdist worker number (0 for gw0), or None outside a parallel run."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) if worker[:2] == "gw" and worker[2:].isdigit() else None


def _port_block() -> range:
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768  # Linux's default
    blocks = (ephemeral - PORTS_FLOOR) // PORTS_PER_BLOCK
    if blocks < 1:
        return range(0)  # an unusual ephemeral range: ask the kernel (bind to port 0) instead
    worker = xdist_worker()
    number = 0 if worker is None else worker + 1
    start = PORTS_FLOOR + number % blocks * PORTS_PER_BLOCK
    return range(start, start + PORTS_PER_BLOCK)


_PORTS = _port_block()
# From a random place in the block (another run of the suite may be using the same block), then
# round it: a port is handed out again only after every other one of the block was.
_next_ports = itertools.islice(itertools.cycle(_PORTS), secrets.randbelow(len(_PORTS) or 1), None)


def _bindable(port: int) -> int | None:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return None  # listened on, or still in use by a connection: the next one
        return int(sock.getsockname()[1])


def free_port() -> int:
    """A loopback port nothing uses, for a server about to be started on it."""
    for _ in range(len(_PORTS)):
        if port := _bindable(next(_next_ports)):
            return port
    port = _bindable(0)
    assert port is not None
    return port


def wait_for_port(
    port: int, *, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _pg_bindir() -> Path:
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run scripts/provision.sh (make test does)")
    return Path(found[-1])


@dataclass
class PostgresServer:
    """A PostgreSQL cluster in a temporary directory; as root it runs as the `postgres` user."""

    root: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    user: str = "bastion"
    process: subprocess.Popen[bytes] | None = None

    def _as_owner(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def start(self) -> PostgresServer:
        bindir = _pg_bindir()
        data = self.root / "data"
        self.root.mkdir(parents=True, exist_ok=True)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        # A cluster already initialized here is started again (a restart after ``stop``).
        if not (data / "PG_VERSION").exists():
            result = subprocess.run(
                [
                    *self._as_owner(),
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    self.user,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
                check=False,
                capture_output=True,
            )
            if result.returncode != 0:
                raise RuntimeError(f"initdb failed: {result.stderr.decode(errors='replace')[-2000:]}")
        self.process = subprocess.Popen(
            [
                *self._as_owner(),
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, process=self.process)
        # The port accepts connections a moment before the cluster admits logins.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                break
            time.sleep(0.1)
        return self

    def url(self, database: str = "postgres", driver: str = "asyncpg") -> str:
        return f"postgresql+{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.process is None:
            return
        # Fast shutdown of the postmaster itself, and the `runuser` wrapper woken: the wrapper stops
        # itself when its child is SIGSTOPped (``paused``) and would pass no signal on.
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(self.processes()[0], signal.SIGINT)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)
        _stop(self.process)

    def processes(self) -> list[int]:
        """The postmaster (from its pid file) and every process it started."""
        postmaster = int((self.root / "data" / "postmaster.pid").read_text().split()[0])
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                # The parent pid is the 2nd field after the parenthesized command name.
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == postmaster:
                    children.append(int(entry.name))
        return [postmaster, *children]


@contextlib.contextmanager
def paused(server: PostgresServer) -> Iterator[None]:
    """Every process of ``server`` SIGSTOPped (it accepts nothing and answers nothing) until the
    block ends."""
    pids = server.processes()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        # The `runuser` wrapper (as root) stopped itself with its child: it is woken too.
        wrapper = [server.process.pid] if server.process is not None else []
        for pid in [*pids, *wrapper]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@dataclass
class RedisServer:
    """A Redis server with a password; no persistence, or with ``data_dir`` an append-only file
    there (as the compose file runs it), so a restart on the same port keeps the state."""

    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    data_dir: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    options: tuple[str, ...] = ()  # more redis-server options (a Cluster node's)

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("Redis is not installed: run scripts/provision.sh (make test does)")
        if self.data_dir is None:
            persistence = ["--save", "", "--appendonly", "no"]
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            persistence = ["--dir", str(self.data_dir), "--save", "", "--appendonly", "yes"]
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                *persistence,
                "--requirepass",
                self.password,
                "--protected-mode",
                "yes",
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, process=self.process)
        return self

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None


@dataclass
class RedisClusterServers:
    """A Redis Cluster of ``masters`` masters and no replicas on loopback, sharing one password.

    Each node keeps its cluster state (nodes.conf) in its own folder under ``root``, and its
    cluster bus on a port of its own. Started, the cluster covers every slot and says
    ``cluster_state:ok``. With ``tls``, clients and the cluster bus speak only TLS, under a test
    CA whose certificate is ``root / "ca.pem"`` (``rediss+cluster://`` with ``ssl_ca_certs``).
    """

    root: Path
    masters: int = 3
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    nodes: list[RedisServer] = field(default_factory=list)
    tls: bool = False

    def _tls_options(self, port: int) -> tuple[str, ...]:
        from tests.support.pki import TestCA

        files = self.root
        if not (files / "ca.pem").exists():
            ca = TestCA(files)
            ca.issue("node", "127.0.0.1")
            # The cluster bus authenticates its peers whatever tls-auth-clients says: each node
            # presents a client certificate to the others.
            ca.issue("peer", "cluster-node", client=True)
        pairs = {
            "port": "0",
            "tls-port": str(port),
            "tls-cluster": "yes",
            "tls-auth-clients": "no",
            "tls-cert-file": str(files / "node.pem"),
            "tls-key-file": str(files / "node-key.pem"),
            "tls-client-cert-file": str(files / "peer.pem"),
            "tls-client-key-file": str(files / "peer-key.pem"),
            "tls-ca-cert-file": str(files / "ca.pem"),
        }
        return tuple(item for name, value in pairs.items() for item in (f"--{name}", value))

    def _cli(self, cli: str) -> list[str]:
        tls = ["--tls", "--cacert", str(self.root / "ca.pem")] if self.tls else []
        return [cli, *tls, "--no-auth-warning", "-a", self.password]

    def start(self, *, timeout: float = 60.0) -> RedisClusterServers:
        """Create the cluster, or start its stopped nodes again (they remember it: an outage ends)."""
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed: run scripts/provision.sh (make test does)")
        if self.nodes:
            for node in self.nodes:
                node.start()
            self._wait_until_ok(cli, timeout)
            return self
        try:
            for index in range(self.masters):
                folder = self.root / f"node{index}"
                folder.mkdir(parents=True, exist_ok=True)
                port = free_port()
                options = ("--cluster-enabled", "yes", "--cluster-port", str(free_port()))
                options += ("--cluster-config-file", "nodes.conf", "--dir", str(folder))
                options += self._tls_options(port) if self.tls else ()
                self.nodes.append(RedisServer(port=port, password=self.password, options=options).start())
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            create = ["--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"]
            subprocess.run(
                [*self._cli(cli), *create],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout,
            )
            self._wait_until_ok(cli, timeout)
        except BaseException:
            self.stop()
            self.nodes.clear()
            raise
        return self

    def _wait_until_ok(self, cli: str, timeout: float) -> None:
        # Every node must agree: a node that has not yet heard of every slot's owner answers
        # CLUSTERDOWN, and a client that happened to ask it first would see an outage.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    [*self._cli(cli), "-p", str(node.port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout
                for node in self.nodes
            ]
            if all("cluster_state:ok" in state for state in states):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the Redis Cluster did not reach cluster_state:ok within {timeout}s")

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        if self.tls:
            return f"rediss+cluster://:{self.password}@{seeds}?ssl_ca_certs={self.root / 'ca.pem'}"
        return f"redis+cluster://:{self.password}@{seeds}"

    def stop(self) -> None:
        """Stop every node (``start`` brings the same cluster back)."""
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def running(server: PostgresServer | RedisServer) -> Iterator[PostgresServer | RedisServer]:
    server.start()
    try:
        yield server
    finally:
        server.stop()
