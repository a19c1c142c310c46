"""Several "machines" on one Linux box, for multi-host tests: network namespaces joined by
veth pairs on a bridge, addressed from the loopback range. Needs root and `ip netns`.

    with Network(["svc", "hostA", "hostB"]) as net:    # the first one holds the bridge
        net.address("hostA")                # "127.1.0.2"
        net.popen("hostA", argv)            # a process on hostA (its hostname is "hostA")
        with net.entered("svc"): ...        # this thread on svc: sockets it opens stay there
        net.cut("hostA")                    # unplug hostA's cable
    # every process left in the namespaces is killed and the namespaces deleted, even on error

    with postgres_server(net, "svc") as url, redis_server(net, "svc") as broker: ...

Topology: the first host holds a bridge `br0` with address 127.1.0.1; every other host has
an `eth0` (127.1.0.2, .3, ...) whose veth peer is a port of that bridge: one segment,
127.1.0.0/16. Interfaces are created directly inside their namespaces, so the root
namespace (its interfaces, addresses and routes) is never touched, and several runs at once
can use the same addresses without meeting. Namespaces are named `tdnet-PID-RANDOM-HOST`,
so concurrent runs do not collide and `sweep` can remove what a killed run left behind.

Why loopback addresses: nothing outside these namespaces can route them, so a test can
neither reach nor shadow a real network. Linux drops 127/8 traffic on interfaces other than
`lo` (connect fails with EINVAL) unless `route_localnet` is set, so every namespace sets
net.ipv4.conf.all.route_localnet=1. The 127.0.0.0/8 route of `lo` does not swallow the
segment: with no policy rules the kernel keeps its local and main routes in one table,
where the /16 of `eth0` is the longer match.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

SUBNET = "127.1.0"  # a /16 in the loopback range: .1 is the bridge's host, then .2, .3 ...
PREFIX = "tdnet-"
_CLONE_NEWNET = 0x40000000  # <sched.h>; os.setns arrives only in Python 3.12


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def unavailable() -> str | None:
    """Why namespaces cannot be made here (not root, no `ip netns`), or None if they can."""
    if os.geteuid() != 0:
        return "need root"
    missing = [t for t in ("ip", "unshare", "hostname", "sysctl") if not shutil.which(t)]
    if missing:
        return f"need {', '.join(missing)}"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        _ip("netns", "add", probe)
        _ip("netns", "del", probe)
    except (OSError, subprocess.SubprocessError) as exc:
        err = getattr(exc, "stderr", b"") or b""
        return f"`ip netns` unavailable: {err.decode(errors='replace').strip() or exc}"
    return None


def _alive(pid: int) -> bool:
    """Running (a zombie, killed and not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _ns_pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30)
    return [int(p) for p in out.stdout.split()]


def _remove_namespace(ns: str) -> None:
    """SIGKILL every process inside `ns` (they all belong to the run that made it), wait
    for them to go, delete the namespace (its interfaces go with it)."""
    deadline = time.monotonic() + 20
    while (pids := _ns_pids(ns)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def _dead_run(name: str) -> bool:
    """Whether `name` (a namespace or folder of ours) belongs to a run that is gone."""
    pid = name.removeprefix(PREFIX).split("-", 1)[0]
    return name.startswith(PREFIX) and pid.isdigit() and not _alive(int(pid))


def sweep() -> list[str]:
    """Remove the servers, namespaces and temporary folders of runs whose process is gone
    (a run killed with SIGKILL cannot clean up after itself); return the namespaces removed."""
    folders = [
        Path(f)
        for f in glob.glob(os.path.join(tempfile.gettempdir(), f"{PREFIX}*"))
        if _dead_run(Path(f).name)
    ]
    for folder in folders:  # stopped, not killed: a killed postmaster leaks shared memory
        if (folder / "data" / "postmaster.pid").exists() and (pg_ctl := _postgres_bin("pg_ctl")):
            stop = ["runuser", "-u", "postgres", "--", pg_ctl, "-D", str(folder / "data")]
            subprocess.run([*stop, "-m", "immediate", "stop"], capture_output=True, timeout=60)
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    removed = []
    for ns in (line.split()[0] for line in out.stdout.splitlines() if line.split()):
        if _dead_run(ns):
            _remove_namespace(ns)
            removed.append(ns)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


class Network:
    """Hosts on one segment; see the module docstring."""

    def __init__(self, hosts: Sequence[str]) -> None:
        if len(hosts) < 2 or len(set(hosts)) != len(hosts):
            raise ValueError(f"need two or more distinct hosts, got {hosts}")
        self.hosts = list(hosts)
        self.tag = f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._made: list[str] = []

    def namespace(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def address(self, host: str) -> str:
        return f"{SUBNET}.{self.hosts.index(host) + 1}"

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> Network:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        for host in self.hosts:
            ns = self.namespace(host)
            _ip("netns", "add", ns)
            self._made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            self.run(host, ["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"])
        hub, *others = self.hosts
        hub_ns = self.namespace(hub)
        _ip("-n", hub_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", hub_ns, "addr", "add", f"{self.address(hub)}/16", "dev", "br0")
        _ip("-n", hub_ns, "link", "set", "br0", "up")
        for i, host in enumerate(others, start=1):
            ns, port = self.namespace(host), f"port{i}"
            veth = ["type", "veth", "peer", "name", port, "netns", hub_ns]
            _ip("link", "add", "eth0", "netns", ns, *veth)
            _ip("-n", hub_ns, "link", "set", port, "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{self.address(host)}/16", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def close(self) -> None:
        """Kill every process in the namespaces, then delete them. Idempotent."""
        while self._made:
            _remove_namespace(self._made.pop())

    # ------------------------------------------------------------------ using it
    def command(self, host: str, argv: Sequence[str], *, hostname: bool = False) -> list[str]:
        """`argv` run on `host`; with `hostname`, also in a UTS namespace named after it."""
        wrap = ["ip", "netns", "exec", self.namespace(host)]
        if hostname:  # each step execs the next: the process started is `argv` itself
            wrap += ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host]
        return [*wrap, *argv]

    def run(self, host: str, argv: Sequence[str], timeout: float = 120) -> str:
        done = subprocess.run(
            self.command(host, argv), capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} on {host} failed: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def popen(self, host: str, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start `argv` on `host`, with hostname `host`. Killed by `close` at the latest."""
        return subprocess.Popen(self.command(host, argv, hostname=True), **kwargs)

    def cut(self, host: str) -> None:
        """Unplug `host`'s cable at the bridge. Its processes run on, and its packets are
        dropped silently: connections time out rather than fail, as after a real
        partition. (Taking `eth0` down on the host instead would remove its route, and
        127.1.0.1 would then be its own loopback: refused at once.)"""
        port = f"port{self.hosts.index(host)}"
        _ip("-n", self.namespace(self.hosts[0]), "link", "set", port, "down")

    @contextlib.contextmanager
    def entered(self, host: str) -> Iterator[None]:
        """Run the calling thread on `host`. A network namespace is a per-thread property,
        and a socket stays in the namespace it was made in: close connection pools made in
        here before leaving (`tests.jobs.helpers.reset_process_caches`)."""
        with (
            open("/proc/thread-self/ns/net") as home,
            open(f"/run/netns/{self.namespace(host)}") as there,
        ):
            _setns(there.fileno())
            try:
                yield
            finally:
                _setns(home.fileno())


# --------------------------------------------------------------------------- services
def _postgres_bin(tool: str) -> str | None:
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"),
        key=lambda p: [int(x) for x in p.split("/")[4].split(".") if x.isdigit()],
    )
    return found[-1] if found else shutil.which(tool)


def services_missing() -> str | None:
    """Which server binary a `postgres_server` or `redis_server` needs and lacks, or None."""
    missing = [t for t in ("initdb", "pg_ctl") if not _postgres_bin(t)]
    missing += [t for t in ("redis-server", "runuser") if not shutil.which(t)]
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        missing.append("a postgres user")
    return f"need {', '.join(missing)}" if missing else None


@contextlib.contextmanager
def postgres_server(net: Network, host: str, port: int = 5432) -> Iterator[str]:
    """A throwaway PostgreSQL on `host`'s address (trust auth for the segment only); yield
    the URL of its `postgres` database; stop it and delete its files.

    `idle_in_transaction_session_timeout`: a client cut off between two statements of a
    transaction keeps its row locks until the server notices (TCP keepalive: hours); this
    ends such a session after 5 s, as a deployment with workers on other machines should
    (docs/jobs.md).
    """
    initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
    assert initdb and pg_ctl, services_missing()
    folder = Path(tempfile.mkdtemp(prefix=f"{net.tag}-pg-"))
    data = folder / "data"
    as_postgres = ["runuser", "-u", "postgres", "--"]
    try:
        shutil.chown(folder, "postgres")
        subprocess.run(
            [*as_postgres, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {SUBNET}.0/16 trust\n")
        options = (
            f"-c listen_addresses={net.address(host)} -c port={port} "
            f"-c unix_socket_directories={folder} -c fsync=off "
            "-c idle_in_transaction_session_timeout=5s"
        )
        start = [pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-o", options]
        net.run(host, [*as_postgres, *start, "start"])
        yield f"postgresql://postgres@{net.address(host)}:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            stop = [*as_postgres, pg_ctl, "-D", str(data), "-m", "immediate", "stop"]
            subprocess.run(stop, capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def redis_server(net: Network, host: str, port: int = 6379) -> Iterator[str]:
    """A throwaway Redis on `host`'s address, in memory only; yield its URL; stop it.

    Protected mode is off: it would refuse every client not on loopback, and nothing
    outside the namespaces can reach this address anyway.
    """
    folder = Path(tempfile.mkdtemp(prefix=f"{net.tag}-redis-"))
    argv = ["redis-server", "--bind", net.address(host), "--port", str(port), "--save", ""]
    argv += ["--appendonly", "no", "--protected-mode", "no", "--dir", str(folder)]
    with (folder / "log").open("ab") as log:
        proc = net.popen(host, argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"redis://{net.address(host)}:{port}/0"
        _wait_for_redis(net, host, url, proc)
        yield url
    finally:
        proc.kill()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_redis(net: Network, host: str, url: str, proc: subprocess.Popen) -> None:
    import redis

    deadline = time.monotonic() + 30
    with net.entered(host):
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.exceptions.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            client.close()
