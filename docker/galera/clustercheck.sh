#!/bin/bash
# clustercheck-style HTTP probe for HAProxy (docker/haproxy/haproxy.cfg) and for the node's
# compose healthcheck. socat runs one copy per TCP connection on port 9200, with the
# connection on stdin/stdout (see entrypoint.sh).
#
# GET / (any path but /primary): 200 only when this node is Synced (wsrep_local_state = 4)
# and wsrep_ready = ON; 503 in every other state (Joining, Donor/Desynced, Joined,
# non-primary, server down), so HAProxy never sends a write to a node that is not a full,
# current member of the primary component.
#
# GET /primary: 200 when this node is in a primary component, whatever its local state
# (a Donor or a Joiner too). A starting node asks its peers this before it would found a
# cluster (bootstrap.sh): a cluster that is running, even busy with a state transfer, is
# joined, never forked.
#
# GET /state: 200 always (the responder answers even while mariadbd is down), body one
# line read from the data directory: `empty` (no saved state: a datadir never initialised,
# or lost), or `<cluster uuid> <seqno> <safe_to_bootstrap>` from grastate.dat. A starting
# node asks this before it would found a cluster from nothing (bootstrap.sh).
#
# Runs as the OS user `mysql` and logs in as mysql@localhost via unix_socket: no password.
set -u

# Read the whole request: closing a socket with unread input makes the kernel send a RST,
# which could make HAProxy drop the answer and count a failure.
path=/
first=1
while IFS= read -r -t 2 line; do
    line=${line%$'\r'}
    [ -z "$line" ] && break
    if [ "$first" = 1 ]; then
        read -r _method path _version <<<"$line"
        first=0
    fi
done

# The official image's server socket and data directory (override only to test the script
# elsewhere).
socket=${CLUSTERCHECK_SOCKET:-/run/mysqld/mysqld.sock}
datadir=${CLUSTERCHECK_DATADIR:-/var/lib/mysql}

respond() {
    local code=$1 reason=$2 body=$3
    printf 'HTTP/1.1 %s %s\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s' \
        "$code" "$reason" "${#body}" "$body"
}

if [ "$path" = /state ]; then
    if [ -f "$datadir/grastate.dat" ]; then
        uuid=$(sed -n 's/^uuid:[[:space:]]*//p' "$datadir/grastate.dat")
        seqno=$(sed -n 's/^seqno:[[:space:]]*//p' "$datadir/grastate.dat")
        safe=$(sed -n 's/^safe_to_bootstrap:[[:space:]]*//p' "$datadir/grastate.dat")
        respond 200 OK "${uuid:-?} ${seqno:--1} ${safe:-0}
"
    elif [ -d "$datadir/mysql" ]; then
        respond 200 OK $'initialised\n'  # a datadir with tables but no Galera state yet
    else
        respond 200 OK $'empty\n'
    fi
    exit 0
fi

status=$(mariadb --protocol=socket --socket="$socket" --user=mysql --batch --skip-column-names \
    --connect-timeout=2 \
    -e "SELECT CONCAT(
            MAX(IF(VARIABLE_NAME = 'WSREP_LOCAL_STATE', VARIABLE_VALUE, NULL)), ' ',
            MAX(IF(VARIABLE_NAME = 'WSREP_READY', VARIABLE_VALUE, NULL)), ' ',
            MAX(IF(VARIABLE_NAME = 'WSREP_CLUSTER_STATUS', VARIABLE_VALUE, NULL)))
        FROM information_schema.GLOBAL_STATUS
        WHERE VARIABLE_NAME IN ('WSREP_LOCAL_STATE', 'WSREP_READY', 'WSREP_CLUSTER_STATUS')" \
    2>/dev/null)


if [ "$path" = /primary ]; then
    if [ "${status##* }" = Primary ]; then
        respond 200 OK $'Galera node is in the primary component.\n'
    else
        respond 503 'Service Unavailable' "Galera node is not in a primary component (${status:-no answer}).
"
    fi
elif [ "${status% *}" = "4 ON" ]; then
    respond 200 OK $'Galera node is Synced.\n'
else
    respond 503 'Service Unavailable' "Galera node is not Synced (wsrep_local_state wsrep_ready: ${status:-no answer}).
"
fi
