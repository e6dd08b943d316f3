#!/bin/sh
# As the official redis image does: started as root, own /data and run as user redis.
set -e
if [ "$(id -u)" = 0 ]; then
    find /data \! -user redis -exec chown redis:redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
fi
exec "$@"
