#!/bin/sh
# The nginx container's entrypoint (docker-compose.yml), then the command: nginx.
#
# nginx resolves a name in an `upstream` block only when it starts (re-resolving needs
# `server … resolve`, open-source nginx 1.27.3 and later), so replicas added by
# `docker compose up --scale app=N` would never get a request. Instead this script asks
# Docker's DNS for every address of the app service (BB_APP_SERVICE, default app) every
# BB_RESOLVE_INTERVAL_S (default 2), writes them as the upstream's `server` lines
# (compose.conf includes them) and, when the set changed, reloads nginx: a graceful
# reload, so open WebSockets and long-polls finish on the old workers, and least_conn
# and the upstream keep-alive stay as configured. An address joins once its /readyz
# answers, so a replica still starting gets no request; one that is gone leaves at the
# next look (nginx's passive checks skip it meanwhile). Works on any nginx version.
set -eu
sh /etc/nginx/bb/limit-exempt.sh true  # writes BB_LIMIT_EXEMPT's list (see that script)

app="${BB_APP_SERVICE:-app}"
port="${BB_APP_PORT:-8000}"
interval="${BB_RESOLVE_INTERVAL_S:-2}"
servers=/etc/nginx/conf.d/bb-upstream-servers.conf

resolve() {  # every IPv4 address of the service, sorted, one per line
    getent ahostsv4 "$app" | awk '{ print $1 }' | sort -u
}

ready() {
    curl -fsS -o /dev/null --max-time 1 "http://$1:$port/readyz"
}

joinable() {  # of the addresses found ($1), those already served ($2) or now ready
    for address in $1; do
        if printf '%s\n' "$2" | grep -qxF "$address" || ready "$address"; then
            echo "$address"
        fi
    done
}

write_servers() {
    for address in $1; do
        printf 'server %s:%s max_fails=1 fail_timeout=3s;\n' "$address" "$port"
    done > "$servers.tmp"
    mv "$servers.tmp" "$servers"
}

current=""
while [ -z "$current" ]; do
    current=$(joinable "$(resolve || true)" "")
    [ -n "$current" ] || { echo "waiting for a ready replica of '$app'…"; sleep 1; }
done
write_servers "$current"
echo "replicas of '$app':" $current

"$@" &
nginx=$!
# docker stop sends TERM (nginx: fast shutdown); QUIT asks nginx for a graceful one
trap 'kill -TERM "$nginx" 2>/dev/null || true' TERM INT
trap 'kill -QUIT "$nginx" 2>/dev/null || true' QUIT

while kill -0 "$nginx" 2>/dev/null; do
    sleep "$interval" &
    wait $! || true
    found=$(joinable "$(resolve || true)" "$current")
    # no address at all (every replica stopped at once): keep the last list, so nginx
    # answers 502 quickly instead of failing to load a config with an empty upstream
    if [ -n "$found" ] && [ "$found" != "$current" ]; then
        write_servers "$found"
        echo "replicas of '$app' now:" $found
        current="$found"
        kill -HUP "$nginx" 2>/dev/null || true
    fi
done
wait "$nginx"
