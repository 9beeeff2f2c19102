#! /bin/bash
# Stand-in for the component entry point (it pip-installs the components under /app and runs
# `python -u -m $COMPONENT`): what it would start from.
ROOTDIR='/app'
echo "in $(pwd), shell $PYENV_SHELL, $(ls -A "$ROOTDIR" | wc -l) entries in $ROOTDIR"
pip --version
pipenv --version
tail -n 3 ~/.bashrc
cat ~/.bashrc_component
stat -c '%n %U:%G %a %s' /docker-entrypoint.sh /root/.bashrc /root/.bashrc_component /app
