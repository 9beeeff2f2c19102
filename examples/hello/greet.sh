#!/bin/sh
echo "$GREETING from $(hostname), running as $(id -un) in $(pwd) (pid $$), $(cat /app/built)"
