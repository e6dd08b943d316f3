#!/bin/sh
# Run first by the nginx container's entrypoint (compose-entrypoint.sh): writes BB_LIMIT_EXEMPT, networks
# separated by commas ("172.28.0.1/32,10.0.0.0/8"), as the `geo` list of addresses the
# rate limits leave alone (compose.conf includes it), then runs the command: nginx. The
# local cluster's `up` renders the same setting (service/ops/edge.py).
set -euf  # -f: no file name expansion of the list
out="${BB_LIMIT_EXEMPT_FILE:-/etc/nginx/conf.d/bb-limit-exempt.conf}"
: > "$out"
for network in $(printf '%s' "${BB_LIMIT_EXEMPT:-}" | tr ',' ' '); do
    case "$network" in
        *[!0-9a-fA-F.:/]*) echo "BB_LIMIT_EXEMPT: '$network' is not an address or network (CIDR)" >&2
                           exit 2 ;;
    esac
    printf '%s 1;\n' "$network" >> "$out"
done
exec "$@"
