#!/bin/bash
# How this Galera node should start, decided from its own saved state and its peers'
# answers, never from its name. Prints one line:
#
#   join          start normally: a peer is in a primary component (it is joined, by IST
#                 or SST), or this node crashed while in one (gvwstate.dat is there), so
#                 Galera's pc.recovery re-forms that component when its members return
#   new-cluster   found the cluster (--wsrep-new-cluster): no peer is in a primary
#                 component and this node left last, cleanly (safe_to_bootstrap: 1 in
#                 grastate.dat; no peer of the same cluster reports a later seqno), or this
#                 is the very first start of the designated node (GALERA_FIRST_BOOTSTRAP=1):
#                 no saved state here, and every peer answered that it has none either. An
#                 empty datadir is never enough by itself: a lost volume looks the same, and
#                 founding from it would start an empty second cluster (or, once the others
#                 joined it, wipe them by state transfer)
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
#   GALERA_PROBE_ROUNDS     rounds of probes before a peer counts as not primary (default 3)
set -u

datadir=${GALERA_DATADIR:-/var/lib/mysql}
self=${HOSTNAME:-}
default_peers=""
for node in galera1 galera2 galera3; do
    [ "$node" = "$self" ] || default_peers+="${default_peers:+,}$node:9200"
done
peers=${GALERA_PEERS:-$default_peers}
timeout=${GALERA_PROBE_TIMEOUT:-3}
rounds=${GALERA_PROBE_ROUNDS:-3}

# The first line of the body of GET $2 from the clustercheck probe at $1 (host:port) when it
# answered 200; exit status 1 (and nothing printed) otherwise.
probe() {
    local host=${1%:*} port=${1##*:}
    timeout "$timeout" bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "GET %s HTTP/1.0\r\n\r\n" "$2" >&3
        IFS= read -r status <&3
        [[ $status == *" 200 "* ]] || exit 1
        while IFS= read -r line <&3; do line=${line%$'"'"'\r'"'"'}; [ -z "$line" ] && break; done
        IFS= read -r body <&3
        printf "%s\n" "$body"' "$host" "$port" "$2" 2>/dev/null
}

IFS=, read -r -a peer_list <<<"$peers"
for ((round = 1; round <= rounds; round++)); do
    for peer in "${peer_list[@]}"; do
        if [ -n "$peer" ] && probe "$peer" /primary >/dev/null; then
            echo "join"
            exit 0
        fi
    done
    [ "$round" -lt "$rounds" ] && sleep 1
done

# What each peer has saved: "empty", "initialised", "<uuid> <seqno> <safe>", or "" (no answer).
declare -A peer_state=()
for peer in "${peer_list[@]}"; do
    [ -n "$peer" ] && peer_state[$peer]=$(probe "$peer" /state || true)
done

grastate="$datadir/grastate.dat"
if [ -f "$grastate" ]; then
    uuid=$(sed -n 's/^uuid:[[:space:]]*//p' "$grastate")
    seqno=$(sed -n 's/^seqno:[[:space:]]*//p' "$grastate")
    if grep -Eq '^safe_to_bootstrap:[[:space:]]*1[[:space:]]*$' "$grastate"; then
        for peer in "${!peer_state[@]}"; do
            read -r peer_uuid peer_seqno _safe <<<"${peer_state[$peer]}"
            if [ "$peer_uuid" = "$uuid" ] && [ "${peer_seqno:--1}" -gt "${seqno:--1}" ] 2>/dev/null; then
                echo "wait $peer holds a later state of this cluster (seqno $peer_seqno > $seqno):" \
                    "it should found the cluster, not this node; see docker/README.md"
                exit 0
            fi
        done
        echo "new-cluster"
    elif [ -f "$datadir/gvwstate.dat" ]; then
        echo "join"
    else
        echo "wait no peer is in a primary component and this node did not stop last" \
            "(safe_to_bootstrap: 0): the node that did bootstraps; after a crash of them all," \
            "see docker/README.md (recovering the whole cluster)"
    fi
elif [ "${GALERA_FIRST_BOOTSTRAP:-0}" = 1 ] && [ ! -d "$datadir/mysql" ]; then
    for peer in "${peer_list[@]}"; do
        [ -z "$peer" ] && continue
        if [ "${peer_state[$peer]}" != empty ]; then
            seen="did not answer"
            [ -n "${peer_state[$peer]}" ] && seen="has state (${peer_state[$peer]})"
            echo "wait this datadir is empty but $peer $seen: not founding a new cluster" \
                "from nothing (a lost volume?); see docker/README.md"
            exit 0
        fi
    done
    echo "new-cluster"
else
    echo "wait no peer is in a primary component to join yet"
fi
