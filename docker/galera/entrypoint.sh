#!/bin/bash
# Entrypoint of the Galera nodes: start the clustercheck responder on port 9200, then hand
# over to the official image's entrypoint (which initialises the datadir on first start,
# drops to the mysql user and execs mariadbd with the command's arguments).
#
# compose.yaml runs the container with `init: true`, so PID 1 is docker-init: it reaps
# socat's exited children and passes SIGTERM on to mariadbd for a clean Galera leave.
set -euo pipefail

# As the OS user `mysql`, so clustercheck.sh authenticates as mysql@localhost via unix_socket.
gosu mysql socat TCP-LISTEN:9200,reuseaddr,fork "EXEC:/bin/bash /usr/local/bin/clustercheck.sh" &

exec docker-entrypoint.sh "$@"
