#!/bin/sh
# Stand-in for connectorr's entrypoint, which rewrites the routing table and then watches the
# compose project's containers forever: where it runs and what the image gave it.
echo "entrypoint as $(id -u):$(id -g) in $(pwd) with: $*"
for f in /usr/local /usr/local/bin entrypoint.sh envcheck.sh healthcheck.sh; do
    stat -c '%n %F %u:%g %a' "$f"
done
( . ./envcheck.sh )
echo "envcheck.sh exited $?"
