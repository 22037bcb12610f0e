"""What dpd asks of a Ray cluster beyond a local instance: the same code on every node, and
telling a node that was lost from a run that failed.

A node with another dpd commit or another version of the packages a run's numbers depend on
would train silently with it; so the driver asks every node for its versions when it joins a
cluster (``check_cluster``), and each task and actor checks its own against the driver's
(``refuse_other_code``), which also covers nodes that join later. Versions are compared, not
installed: a ``runtime_env`` with pip requirements would need every node to reach a package index
and would rebuild environments per job; a refusal naming the node and the versions leaves the
installing to whoever runs the cluster (docs/CLUSTER.md).

A run lost with its node is worth retrying on another node; a run that raised is not. Ray says
which for a task (``NodeDiedError``); for an actor it says only that the actor is gone, and marks
its node dead once the node misses its health checks (about 15 s with Ray's defaults), so
``node_died`` waits that long for the verdict.
"""

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from dpd.errors import UserError
from dpd.provenance import git_commit, package_versions

# How long to wait for Ray to mark a lost actor's node dead: past Ray's default health checks
# (5 missed checks 3 s apart) with room to spare.
NODE_DEATH_WAIT_S = 30.0


def code_versions() -> Dict[str, str]:
    """What must be the same on every node: Python's and the packages' versions, and the dpd
    commit where dpd runs from a checkout."""
    versions = package_versions()
    commit = git_commit()["commit"]
    versions["dpd commit"] = commit or "none (an installed dpd)"
    return versions


class OtherCode(UserError):
    """A node runs other code than the driver; one line naming the node and the versions."""

    def __init__(self, node: str, theirs: Dict[str, str], ours: Dict[str, str]) -> None:
        differing = sorted(key for key in set(ours) | set(theirs) if ours.get(key) != theirs.get(key))
        listed = ", ".join(f"{key} {theirs.get(key, 'missing')} there, {ours.get(key, 'missing')} here" for key in differing)
        super().__init__(
            f"Ray node {node} runs other code than this driver ({listed}); install the same versions on every node"
        )


def this_node(ray: Any) -> str:
    """This worker's node as a person finds it: its address and the start of its id."""
    context = ray.get_runtime_context()
    return f"{ray.util.get_node_ip_address()} ({context.get_node_id()[:8]})"


def refuse_other_code(ray: Any, expected: Dict[str, str]) -> None:
    """Inside a task or an actor: raise ``OtherCode`` where this node's versions are not the driver's."""
    ours = code_versions()
    if ours != expected:
        raise OtherCode(this_node(ray), ours, expected)


def check_cluster(ray: Any) -> Dict[str, str]:
    """Ask every living node for its versions (a task pinned to it that needs no CPU); raise
    ``OtherCode`` for the first node whose versions are not this driver's. Returns the driver's."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ours = code_versions()
    probe = ray.remote(num_cpus=0, max_retries=0)(code_versions)
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    answers = [
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote()
        for node in nodes
    ]
    for node, theirs in zip(nodes, ray.get(answers)):
        if theirs != ours:
            raise OtherCode(f"{node['NodeManagerAddress']} ({node['NodeID'][:8]})", theirs, ours)
    return ours


def living_nodes(ray: Any) -> List[str]:
    return [node["NodeID"] for node in ray.nodes() if node.get("Alive")]


def node_died(ray: Any, node_id: Optional[str], wait_s: float = NODE_DEATH_WAIT_S) -> bool:
    """Whether Ray marks node ``node_id`` dead within ``wait_s`` seconds (an actor on it is gone)."""
    if node_id is None:
        return False
    deadline = time.monotonic() + wait_s
    while node_id in living_nodes(ray):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


class SimulatedCluster:
    """A Ray cluster of several nodes on this machine, bound to the loopback as dpd's local
    instance is (``ray.cluster_utils.Cluster``): what dpd's tests and ``benchmarks/cluster.py``
    run a cluster's faults on. Each node gets a working directory and a temp directory of its
    own, as a machine of its own would have, so that a file a node writes relative to its working
    directory or in its temp directory is not where the driver looks (``node_dirs``). Ray marks a
    removed node dead within 2 s here (frequent health checks) rather than in 15 s."""

    HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_failure_threshold": 3, "health_check_initial_delay_ms": 0}

    def __init__(self, root: Path, nodes: int = 3, cpus: int = 1) -> None:
        import ray
        from ray.cluster_utils import Cluster

        from dpd.agents.ray_backend import loopback_node

        self.root = Path(root)
        self.cpus = cpus
        self.node_dirs: Dict[str, Path] = {}  # each living node's own directories, by node id
        self._made: List[Path] = []
        options = {"num_cpus": cpus, "node_ip_address": "127.0.0.1", "include_dashboard": False}
        # Ray's session (logs, sockets) where it would be without the nodes' own temp directories.
        session = {"temp_dir": str(Path(tempfile.gettempdir()) / "ray"), "_system_config": self.HEALTH_CHECKS}
        with self._own_dirs(), loopback_node(ray):
            self.cluster = Cluster(initialize_head=True, head_node_args={**options, **session})
        self.head = self.cluster.head_node
        self.node_dirs[self.head.node_id] = self._made[-1]
        self.workers: List[Any] = []  # the living worker nodes
        for _ in range(nodes - 1):
            self.add_node()

    @property
    def address(self) -> str:
        return self.cluster.address

    def add_node(self, env: Optional[Dict[str, str]] = None) -> Any:
        """A worker node with its own directories; ``env``: variables its processes see (a
        ``PYTHONPATH`` that finds other packages, say)."""
        import ray

        from dpd.agents.ray_backend import loopback_node

        with self._own_dirs(env or {}), loopback_node(ray):
            node = self.cluster.add_node(num_cpus=self.cpus, node_ip_address="127.0.0.1")
        self.node_dirs[node.node_id] = self._made[-1]
        self.workers.append(node)
        return node

    def remove_node(self, node: Any) -> None:
        """The node dies at once, as a machine that loses power: no graceful drain; its disk
        goes with it (its directories are no longer looked at)."""
        self.cluster.remove_node(node, allow_graceful=False)
        self.workers.remove(node)
        del self.node_dirs[node.node_id]

    def node_of(self, node_id: str) -> Any:
        return next(node for node in [self.head, *self.workers] if node.node_id == node_id)

    def files_left(self) -> List[Path]:
        """Every file a living node left in its working or temp directory, but Ray's own (its
        ``ray`` folder in a temp directory: the cluster's address, written as the head starts)."""
        return sorted(
            path
            for folder in self.node_dirs.values()
            for path in folder.rglob("*")
            if path.is_file() and path.relative_to(folder).parts[:2] != ("tmp", "ray")
        )

    def shutdown(self) -> None:
        import ray

        ray.shutdown()
        self.cluster.shutdown()

    @contextlib.contextmanager
    def _own_dirs(self, env: Optional[Dict[str, str]] = None) -> Iterator[None]:
        """Start a node's processes in a new working directory, with a new temp directory
        (``TMPDIR``) and ``env``: they inherit all three from this process."""
        folder = self.root / f"node{len(self._made)}"
        (folder / "tmp" / "ray").mkdir(parents=True)
        self._made.append(folder)
        changes = {"TMPDIR": str(folder / "tmp"), **(env or {})}
        saved = {key: os.environ.get(key) for key in changes}
        cwd = os.getcwd()
        os.environ.update(changes)
        os.chdir(folder)
        try:
            yield
        finally:
            os.chdir(cwd)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
