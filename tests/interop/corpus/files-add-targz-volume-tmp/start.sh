#!/bin/sh
# Stand-in for the project's start script, which runs `java -jar` on the unpacked application.
echo "start.sh as $(id -un) in $(pwd)"
for f in /*.csv; do echo "== $f"; cat "$f"; done
find /map-test-aws_supplier-0.0.1 | sort | while read -r p; do
    stat -c '%n %F %u:%g %a %h' "$p"
done
ls -ln /start.sh
