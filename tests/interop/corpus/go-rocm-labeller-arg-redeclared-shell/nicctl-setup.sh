#!/bin/bash
# Stand-in: says which nicctl the image bundles, then runs the command, as the project's does.
set -euo pipefail
echo "bootstrap version: $(cat /opt/bootstrap-version.txt)"
echo "bootstrap nicctl: $(/usr/sbin/nicctl-bootstrap)"
for f in /opt/nicctl-versions/*.gz; do
    echo "${f##*/}: $(gzip -dc "$f" | sh)"
done
stat -c "%n %F %a %s" /lib64/libpci*
exec "$@"
