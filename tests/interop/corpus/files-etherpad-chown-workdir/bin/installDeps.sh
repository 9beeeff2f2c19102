#!/bin/sh
# Stand-in for Etherpad's installDeps.sh, which runs `pnpm install` in src/: the dependency
# tree it leaves, made by the user the RUN runs as.
set -e
cd "$(dirname "$0")/.."
mkdir -p src/node_modules/ep_etherpad-lite src/node_modules/express ~/.npm ~/.cache
echo '{"name": "express", "version": "4.21.2"}' > src/node_modules/express/package.json
ln -s .. src/node_modules/ep_etherpad-lite/src
echo "installDeps.sh done as $(id -un)"
