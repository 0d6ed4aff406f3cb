#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1 for the team-server tests (tests/test_team_server.py), in a folder of its own.
#   eval "$(bash .ci/postgres.sh start DIR)"   installs Debian's postgresql if missing (root + apt-get), creates and starts
#                                             the cluster, prints `export EXPKIT_TEST_POSTGRES=postgresql://...`
#   bash .ci/postgres.sh stop DIR              stops it (the folder stays for its log; delete it when done)
# initdb and the server refuse to run as root, so as root they run as the `postgres` user the package creates.
set -euo pipefail
action=${1:?start or stop}
dir=${2:?a folder for the cluster}

pg_bin() { find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1; }
as_db() { if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

bin=$(pg_bin)
case "$action" in
  start)
    if [[ -z "$bin" ]]; then
      [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } >&2
      bin=$(pg_bin)
    fi
    mkdir -p "$dir"
    [[ "$(id -u)" == 0 ]] && chown postgres: "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_db "$bin/initdb" -D "$dir/data" -U expkit --auth=trust --no-sync >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    as_db "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300" start >&2 \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "export EXPKIT_TEST_POSTGRES=postgresql://expkit@127.0.0.1:$port/postgres"
    ;;
  stop)
    if [[ -n "$bin" && -f "$dir/data/postmaster.pid" ]]; then as_db "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2; fi
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
