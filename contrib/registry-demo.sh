#!/usr/bin/env bash
# A registry and a mirror on loopback, for trying `skiff image pull`:
# Debian's docker-registry (distribution 2.8), plain HTTP, data under DIR
# (default /tmp/skiff-registry-demo), filled with skopeo from the vendored
# images. Not for production: no TLS, no auth.
#
#   contrib/registry-demo.sh start        # origin 127.0.0.1:5055, mirror 127.0.0.1:5056
#   contrib/registry-demo.sh stop-origin  # the origin down, the mirror up
#   contrib/registry-demo.sh stop         # both down, data removed
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${DIR:-/tmp/skiff-registry-demo}

serve() { # NAME PORT
    mkdir -p "$DIR/$1/data"
    cat > "$DIR/$1/config.yml" <<CONF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $DIR/$1/data
http:
  addr: 127.0.0.1:$2
CONF
    setsid docker-registry serve "$DIR/$1/config.yml" > "$DIR/$1/log" 2>&1 < /dev/null &
    echo $! > "$DIR/$1/pid"
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$2/v2/" > /dev/null && return 0
        sleep 0.1
    done
    echo "docker-registry $1 did not start: $(cat "$DIR/$1/log")" >&2
    return 1
}

push() { # ARCHIVE PORT REPO:TAG
    skopeo --insecure-policy copy -q --dest-tls-verify=false \
        "docker-archive:$1" "docker://127.0.0.1:$2/$3"
}

stop() { # NAME
    if [ -f "$DIR/$1/pid" ]; then
        kill "$(cat "$DIR/$1/pid")" 2> /dev/null || true
        rm -f "$DIR/$1/pid"
    fi
}

case "${1:-}" in
    start)
        serve origin 5055
        serve mirror 5056
        for img in busybox compat; do
            push "vendor-images/$img.tar" 5055 "skiff/$img:1"
        done
        push vendor-images/busybox.tar 5056 skiff/busybox:1
        echo "origin http://127.0.0.1:5055 (busybox, compat); mirror http://127.0.0.1:5056 (busybox)"
        ;;
    stop-origin) stop origin ;;
    stop)
        stop origin
        stop mirror
        rm -rf "$DIR"
        ;;
    *)
        echo "usage: $0 start|stop-origin|stop" >&2
        exit 2
        ;;
esac
