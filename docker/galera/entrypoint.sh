#!/bin/bash
# Entrypoint of the Galera nodes: start the clustercheck responder on port 9200, decide how
# this node starts (bootstrap.sh: join a running cluster, found one only when this node
# left last or it is galera1's very first start, otherwise wait), then hand over to the
# official image's entrypoint (which initialises the datadir on first start, drops to the
# mysql user and execs mariadbd with the command's arguments).
#
# compose.yaml runs the container with `init: true`, so PID 1 is docker-init: it reaps
# socat's exited children and passes SIGTERM on to mariadbd for a clean Galera leave.
set -euo pipefail

# As the OS user `mysql`, so clustercheck.sh authenticates as mysql@localhost via unix_socket.
gosu mysql socat TCP-LISTEN:9200,reuseaddr,fork "EXEC:/bin/bash /usr/local/bin/clustercheck.sh" &

while true; do
    decision=$(bash /usr/local/bin/galera-bootstrap.sh)
    case "$decision" in
        new-cluster)
            echo "galera: founding the cluster (--wsrep-new-cluster): ${HOSTNAME:-this node} stopped last or this is the first start" >&2
            set -- "$@" --wsrep-new-cluster
            break
            ;;
        join)
            break
            ;;
        *)
            echo "galera: waiting: ${decision#wait }" >&2
            sleep 5
            ;;
    esac
done

exec docker-entrypoint.sh "$@"
