"""How a Galera node starts (``docker/galera/bootstrap.sh``), decided on real node state.

Reproduced (issue 19): compose started ``galera1`` with ``--wsrep-new-cluster`` every
time, so after galera1 crashed, or when another node had stopped last, it founded a second
cluster or crash-looped. Now each node decides from its own ``grastate.dat`` and
``gvwstate.dat`` and from its peers' clustercheck probes (``clustercheck.sh``, served by
socat as in the image's entrypoint): these tests stop, crash and restart a loopback
cluster running production's ``galera.cnf`` and start each node the way it decided.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra.galera import ClustercheckResponders, GaleraCluster, missing_requirements
from tests.missing import missing_part

pytestmark = [pytest.mark.galera, pytest.mark.timeout(600)]

BOOTSTRAP = Path(__file__).resolve().parents[2] / "docker" / "galera" / "bootstrap.sh"


@pytest.fixture
def cluster(infra_dir: Path) -> Iterator[tuple[GaleraCluster, ClustercheckResponders]]:
    missing = missing_requirements()
    if missing or not shutil.which("socat"):
        missing_part(f"Galera or socat not installed: {', '.join(missing) or 'socat'}")
    # Below infra_dir (mode 0755): mariadbd and the probes run as the mysql user.
    cluster = GaleraCluster(infra_dir / "galera-bootstrap").start()
    probes = ClustercheckResponders(cluster)
    try:
        yield cluster, probes
    finally:
        probes.stop()
        cluster.stop()


def decide(cluster: GaleraCluster, probes: ClustercheckResponders, index: int, **env: str) -> str:
    result = subprocess.run(
        ["bash", str(BOOTSTRAP)],
        env={
            "PATH": os.environ["PATH"],
            "GALERA_DATADIR": str(cluster.nodes[index - 1].datadir),
            "GALERA_PEERS": probes.peers_of(index),
            "GALERA_PROBE_ROUNDS": "2",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


def start_as_decided(
    cluster: GaleraCluster, probes: ClustercheckResponders, index: int, *, wait=True
) -> str:
    decision = decide(cluster, probes, index)
    assert decision in ("join", "new-cluster"), decision
    cluster.start_node(index, bootstrap=decision == "new-cluster", wait=wait)
    return decision


def cluster_status(cluster: GaleraCluster) -> list[tuple[str, str, str]]:
    return [
        (
            status["wsrep_cluster_status"],
            status["wsrep_local_state_comment"],
            status["wsrep_cluster_size"],
        )
        for status in (node.status() for node in cluster.nodes)
    ]


def test_a_running_cluster_is_joined_and_the_node_that_stopped_last_founds_it_again(cluster):
    cluster, probes = cluster
    # While the cluster runs, every node (even with no state, even galera1) joins it.
    assert [decide(cluster, probes, i) for i in (1, 2, 3)] == ["join"] * 3
    empty = cluster.workdir / "empty"
    empty.mkdir()
    assert decide(cluster, probes, 1, GALERA_DATADIR=str(empty), GALERA_FIRST_BOOTSTRAP="1") == (
        "join"
    )

    # A clean stop of the whole cluster, galera1 first: galera3 stopped last.
    for index in (1, 2, 3):
        cluster.stop_node(index)
    decisions = [decide(cluster, probes, i) for i in (1, 2, 3)]
    assert decisions[2] == "new-cluster"
    assert decisions[0].startswith("wait ")
    assert "safe_to_bootstrap: 0" in decisions[0]
    assert decisions[1].startswith("wait ")
    # The old rule (galera1 always bootstraps) would found a cluster from the node that
    # stopped first: the decision refuses it whatever its name.
    assert decide(cluster, probes, 1, GALERA_FIRST_BOOTSTRAP="1") == decisions[0]

    # Start in the "wrong" order, each node as it decides: galera1 waits until galera3
    # has founded the cluster, then joins.
    assert start_as_decided(cluster, probes, 3) == "new-cluster"
    assert start_as_decided(cluster, probes, 1) == "join"
    assert start_as_decided(cluster, probes, 2) == "join"
    assert cluster_status(cluster) == [("Primary", "Synced", "3")] * 3


def test_after_every_node_crashed_they_all_rejoin_and_recover_the_primary_component(cluster):
    cluster, probes = cluster
    connection = cluster.nodes[0].connect()
    connection.cursor().execute("CREATE DATABASE crash_drill")
    connection.cursor().execute("CREATE TABLE crash_drill.t (id INT PRIMARY KEY)")
    connection.cursor().execute("INSERT INTO crash_drill.t VALUES (1), (2), (3)")
    connection.commit()
    connection.close()

    for index in (1, 2, 3):
        cluster.kill_node(index, signal.SIGKILL)
    # No node left cleanly (safe_to_bootstrap: 0 everywhere), each crashed in the primary
    # component (gvwstate.dat): none may found a cluster, all start and pc.recovery
    # re-forms the component once they are all back.
    assert [decide(cluster, probes, i) for i in (1, 2, 3)] == ["join"] * 3
    for index in (1, 2, 3):
        start_as_decided(cluster, probes, index, wait=False)
    for index in (1, 2, 3):
        cluster.wait_synced(index, timeout=180)
    assert cluster_status(cluster) == [("Primary", "Synced", "3")] * 3
    cursor = cluster.nodes[2].connect().cursor()
    cursor.execute("SELECT COUNT(*) FROM crash_drill.t")
    assert cursor.fetchone() == (3,)


def test_an_empty_datadir_founds_a_cluster_only_when_every_peer_has_nothing_either(cluster):
    """Found in review: an empty datadir on galera1 (a lost or recreated volume) while the
    others were down founded an empty second cluster, which the others would then have
    joined by state transfer, wiping their data. Now galera1 founds only when every peer
    answers that it has no state either."""
    cluster, probes = cluster
    for index in (3, 2, 1):
        cluster.stop_node(index)
    lost = cluster.workdir / "lost-volume"
    lost.mkdir()
    decision = decide(cluster, probes, 1, GALERA_FIRST_BOOTSTRAP="1", GALERA_DATADIR=str(lost))
    assert decision.startswith("wait "), decision
    assert "has state" in decision
    assert decide(cluster, probes, 2, GALERA_DATADIR=str(lost)).startswith("wait ")

    # A brand-new deployment: nothing anywhere, every peer says so.
    empties = [cluster.workdir / f"new{i}" for i in (1, 2, 3)]
    for directory in empties:
        directory.mkdir()
        directory.chmod(0o777)
    fresh = ClustercheckResponders(cluster, datadirs=empties)
    try:
        first = {"GALERA_FIRST_BOOTSTRAP": "1", "GALERA_DATADIR": str(empties[0])}
        assert decide(cluster, fresh, 1, **first) == "new-cluster"
        assert decide(cluster, fresh, 2, GALERA_DATADIR=str(empties[1])).startswith("wait ")
    finally:
        fresh.stop()
    # A peer that does not answer at all is not taken for one with nothing.
    first = {"GALERA_FIRST_BOOTSTRAP": "1", "GALERA_DATADIR": str(empties[0])}
    assert "did not answer" in decide(cluster, probes, 1, GALERA_PEERS="127.0.0.1:1", **first)
