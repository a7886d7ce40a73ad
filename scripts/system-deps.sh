#!/usr/bin/env bash
# Install the Debian packages a profile needs, if any are missing. Idempotent.
#   scripts/system-deps.sh run    what `make run` needs (to build mysqlclient)
#   scripts/system-deps.sh test   what the whole test suite needs
#   scripts/system-deps.sh bench  what the benchmark needs (the servers, no browser)
set -euo pipefail
profile=${1:-test}
packages=(libmariadb-dev pkg-config gcc python3-venv)
if [ "$profile" = test ]; then
  # MariaDB for the main suite; galera-4 + rsync for the 3-node cluster; Redis for the real
  # Celery worker; chromium for browser tests; haproxy for failover tests and the drills;
  # socat serves each Galera node's clustercheck probe (as in the image); procps for pgrep.
  packages+=(mariadb-server mariadb-client galera-4 rsync iproute2 redis-server chromium haproxy
    socat procps)
fi
if [ "$profile" = bench ]; then
  # MariaDB (and mysqldump) for the single server; galera-4 + rsync for the 3-node cluster;
  # Redis for the relay nudges; procps for pgrep.
  packages+=(mariadb-server mariadb-client galera-4 rsync redis-server procps)
fi
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing system packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo
  command -v sudo >/dev/null || { echo "need root to install: ${missing[*]}" >&2; exit 1; }
else
  sudo=
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
