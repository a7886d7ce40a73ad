#!/bin/bash
# How this Galera node should start, decided from its own saved state and its peers'
# answers, never from its name. Prints one line:
#
#   join          start normally: a peer is in a primary component (it is joined, by IST
#                 or SST), or this node crashed while in one (gvwstate.dat is there), so
#                 Galera's pc.recovery re-forms that component when its members return
#   new-cluster   found the cluster (--wsrep-new-cluster): no peer is in a primary
#                 component and this node left last, cleanly (safe_to_bootstrap: 1 in
#                 grastate.dat), or this is the very first start of the designated node
#                 (GALERA_FIRST_BOOTSTRAP=1, no saved state at all)
#   wait <why>    none of these: starting would fork the cluster or fail; retry later
#
# Used by entrypoint.sh (which waits and retries on `wait`) and by the tests, which run it
# against loopback nodes' real state (tests/deploy/test_galera_bootstrap.py).
#
# Environment:
#   GALERA_DATADIR          the node's data directory (default /var/lib/mysql)
#   GALERA_PEERS            the peers' clustercheck probes, host:port,… (default: the other
#                           two of galera1,galera2,galera3 on port 9200)
#   GALERA_FIRST_BOOTSTRAP  1 on the node that founds a brand-new cluster (galera1)
#   GALERA_PROBE_TIMEOUT    seconds per probe (default 3)
set -u

datadir=${GALERA_DATADIR:-/var/lib/mysql}
self=${HOSTNAME:-}
default_peers=""
for node in galera1 galera2 galera3; do
    [ "$node" = "$self" ] || default_peers+="${default_peers:+,}$node:9200"
done
peers=${GALERA_PEERS:-$default_peers}
timeout=${GALERA_PROBE_TIMEOUT:-3}

# 0 when the clustercheck probe at $1 (host:port) says its node is in a primary component.
peer_in_primary() {
    local host=${1%:*} port=${1##*:}
    timeout "$timeout" bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "GET /primary HTTP/1.0\r\n\r\n" >&3
        IFS= read -r status <&3
        [[ $status == *" 200 "* ]]' "$host" "$port" 2>/dev/null
}

IFS=, read -r -a peer_list <<<"$peers"
for peer in "${peer_list[@]}"; do
    if [ -n "$peer" ] && peer_in_primary "$peer"; then
        echo "join"
        exit 0
    fi
done

grastate="$datadir/grastate.dat"
if [ -f "$grastate" ]; then
    if grep -Eq '^safe_to_bootstrap:[[:space:]]*1[[:space:]]*$' "$grastate"; then
        echo "new-cluster"
    elif [ -f "$datadir/gvwstate.dat" ]; then
        echo "join"
    else
        echo "wait no peer is in a primary component and this node did not stop last" \
            "(safe_to_bootstrap: 0): the node that did bootstraps; after a crash of them all," \
            "see docker/README.md (recovering the whole cluster)"
    fi
elif [ "${GALERA_FIRST_BOOTSTRAP:-0}" = 1 ] && [ ! -d "$datadir/mysql" ]; then
    echo "new-cluster"
else
    echo "wait no peer is in a primary component to join yet"
fi
