#!/bin/sh
echo "command action: $*"
