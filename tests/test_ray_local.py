"""The local Ray instance dpd starts without ``--address``: it listens on the loopback only, and
it ends with the process that started it, however that process ends (SIGKILL included); and the
``Reaper`` that sees to the second, on plain processes."""

import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, List

import pytest

from dpd.processes import descendants, start_time

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")

# A driver as dpd runs one: a local instance from dpd's connect(), one actor on it.
DRIVER = """
import os, sys, time
import ray
from dpd.agents.ray_backend import connect

local = connect("", 1)
assert local is not None, "Ray was initialised already"

@ray.remote(num_cpus=1)
class Actor:
    def pid(self):
        return os.getpid()

actor = Actor.remote()
print(ray.get(actor.pid.remote()), flush=True)
time.sleep(600)
"""

# An owner that starts a reaper and a grandchild that outlives the child that started it, as a
# Ray agent outlives its raylet: once its shell has ended, the sleeper is no longer the owner's
# descendant. With "stop" the owner stops the reaper itself before it is killed.
OWNER = """
import subprocess, sys, time
from dpd.processes import Reaper

reaper = Reaper.start(interval=0.1)
subprocess.run(["sh", "-c", "sleep 300 & echo $!; sleep 1"], stdout=sys.stdout, check=True)
if sys.argv[1] == "stop":
    reaper.stop()
print("ready", flush=True)
time.sleep(600)
"""


def running(pid: int) -> bool:
    return start_time(pid) is not None


def wait_until_gone(pids: Iterable[int], seconds: float) -> List[int]:
    """The pids still running after up to ``seconds``."""
    deadline = time.monotonic() + seconds
    left = [pid for pid in pids if running(pid)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [pid for pid in left if running(pid)]
    return left


def kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def address(text: str) -> ipaddress._BaseAddress:
    """An address as /proc/net/tcp{,6} writes it: hex, in 32-bit words of host byte order."""
    raw = bytes.fromhex(text)
    return ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)))


def listening(pids: Iterable[int]) -> Dict[str, int]:
    """The local addresses (``host:port``) that the processes ``pids`` listen on, each with one pid."""
    sockets: Dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                host, port = fields[1].split(":")
                sockets[int(fields[9])] = f"{address(host)}:{int(port, 16)}"
    found = {}
    for pid in pids:
        try:
            links = [os.readlink(entry.path) for entry in os.scandir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        for link in links:
            if link.startswith("socket:[") and int(link[8:-1]) in sockets:
                found[sockets[int(link[8:-1])]] = pid
    return found


def loopback(host_port: str) -> bool:
    host = ipaddress.ip_address(host_port.rsplit(":", 1)[0])
    mapped = getattr(host, "ipv4_mapped", None)
    return host.is_loopback or (mapped is not None and mapped.is_loopback)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """A driver with dpd's local instance and an actor; killed by the last test, else at the end."""
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install '.[ray]'); make test installs it")
    script = tmp_path_factory.mktemp("ray") / "driver.py"
    script.write_text(DRIVER)
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    actor = process.stdout.readline().strip()
    assert actor.isdigit(), process.stderr.read() if process.poll() is not None else "no actor pid"
    time.sleep(1.0)  # the reaper's first look at the instance's processes
    tree = descendants(process.pid)
    yield process, tree
    process.kill()
    process.wait()
    kill_all(pid for pid, started in tree.items() if start_time(pid) == started)


def test_local_ray_listens_on_the_loopback_only(driver):
    process, tree = driver
    addresses = listening([process.pid, *tree])
    assert addresses, "found no listening socket of the Ray instance"
    exposed = {host_port: pid for host_port, pid in addresses.items() if not loopback(host_port)}
    assert not exposed, f"listening beyond the loopback: {exposed}"


def test_local_ray_ends_with_a_killed_driver(driver):
    """SIGKILL: nothing of the driver runs after. Its actor, the instance's servers and their
    agents end too, in seconds (Ray's agents alone outlive a killed driver by a minute or more)."""
    process, tree = driver
    assert len(tree) >= 4, f"expected the instance's processes, found {tree}"
    process.kill()
    process.wait()
    left = wait_until_gone([pid for pid, started in tree.items() if start_time(pid) == started], 15.0)
    assert not left, "outlived the driver: " + ", ".join(
        f"{pid} {Path(f'/proc/{pid}/comm').read_text().strip()}" for pid in left
    )


def owner_and_grandchild(tmp_path: Path, mode: str) -> "tuple[subprocess.Popen, int]":
    script = tmp_path / "owner.py"
    script.write_text(OWNER)
    owner = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE, text=True)
    grandchild = int(owner.stdout.readline())
    assert owner.stdout.readline().strip() == "ready"
    return owner, grandchild


def test_reaper_kills_what_a_killed_owner_started(tmp_path):
    owner, grandchild = owner_and_grandchild(tmp_path, "watch")
    try:
        assert running(grandchild)
        owner.kill()
        owner.wait()
        assert wait_until_gone([grandchild], 5.0) == [], "the grandchild outlived its killed owner"
    finally:
        owner.kill()
        kill_all([grandchild])


def test_reaper_leaves_alone_what_its_owner_stopped_it_for(tmp_path):
    """After ``stop`` the owner answers for its processes itself: the reaper kills nothing."""
    owner, grandchild = owner_and_grandchild(tmp_path, "stop")
    try:
        owner.kill()
        owner.wait()
        time.sleep(1.0)
        assert running(grandchild)
    finally:
        owner.kill()
        kill_all([grandchild])


@pytest.mark.parametrize("address, loopback", [("127.0.0.1:6379", True), ("localhost:6379", True), ("10.0.0.5:6379", False)])
def test_a_cluster_on_the_loopback_is_joined_as_one(address, loopback, monkeypatch):
    """Joining ``--address 127.0.0.1:PORT`` (a cluster simulated on this machine) keeps Ray's node
    on the loopback, as the local instance does; any other address is joined as Ray does."""
    import importlib

    from dpd.agents import ray_backend

    ray = pytest.importorskip("ray")
    constants = importlib.import_module("ray._private.ray_constants")
    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: seen.update(kwargs, cluster=constants.ENABLE_RAY_CLUSTER))
    monkeypatch.setattr(ray_backend, "check_cluster", lambda joined: seen.update(checked=joined is ray))
    assert ray_backend.connect(address, 1) is None
    assert seen["address"] == address and seen["cluster"] is not loopback
    assert seen["checked"]  # every node's versions, before anything runs (tests/test_ray_cluster.py)
