#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests (issue 9 §5), never for data that matters:
#   tests/pgserver.sh start DIR PORT   initdb + start + createdb; prints the database URL
#   tests/pgserver.sh stop DIR         stops it and removes DIR
#   tests/pgserver.sh halt DIR         stops it, keeping its data (a server outage, M4)
#   tests/pgserver.sh resume DIR       starts a halted one again on its port
# As root it runs the server as the `postgres` user (initdb refuses root). It listens on
# 127.0.0.1 only, with its own port and socket directory, and without fsync (speed).
set -euo pipefail

command=${1:?usage: pgserver.sh start|stop DIR [PORT]}
dir=${2:?usage: pgserver.sh start|stop DIR [PORT]}
port=${3:-54329}
bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$bin/initdb" ] || { echo "pgserver: no PostgreSQL binaries (install Debian's postgresql)" >&2; exit 3; }

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

serve() {
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -s start -o \
        "-c listen_addresses=127.0.0.1 -p $1 -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
}

case $command in
start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
    echo "$port" >"$dir/port"
    serve "$port"
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres picron_test
    echo "postgresql://postgres@127.0.0.1:$port/picron_test"
    ;;
halt)
    as_owner "$bin/pg_ctl" -D "$dir/data" -w -s -m fast stop
    ;;
resume)
    serve "$(cat "$dir/port")"
    ;;
stop)
    if [ -d "$dir/data" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -w -s -m immediate stop || true
    fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: pgserver.sh start|stop|halt|resume DIR [PORT]" >&2; exit 2 ;;
esac
