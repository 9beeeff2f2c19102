"""`rl pull`, `rl push`, `rl login` and `rl logout`."""
from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable

from rootless.cli.common import open_store
from rootless.errors import UsageError


def _progress(quiet: bool) -> Callable[[str], None]:
    if quiet:
        return lambda _: None

    def say(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return say


def cmd_pull(args: argparse.Namespace) -> int:
    from rootless.registry.pull import pull

    with open_store(args) as store:
        result = pull(store, args.name, args.platform, args.tls_verify, _progress(args.quiet))
    print(result.image.id)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from rootless.registry.push import push

    with open_store(args) as store:
        push(store, args.image, args.destination, args.tls_verify, _progress(args.quiet), args.compression)
    return 0


def _registry(name: str) -> str:
    """The registry a login is for: a host[:port], or docker.io for Docker Hub's names."""
    from rootless.image.reference import DEFAULT_DOMAIN

    host = name.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    return DEFAULT_DOMAIN if host in ("index.docker.io", "registry-1.docker.io") else host


def cmd_login(args: argparse.Namespace) -> int:
    from rootless.registry import auth
    from rootless.registry.client import Registry

    registry = _registry(args.registry or "docker.io")
    username = args.username
    if args.password_stdin:
        if not username:
            raise UsageError("--password-stdin needs -u USERNAME")
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not os.isatty(0):
            raise UsageError("no terminal to ask for a password: use --password-stdin")
        username = username or input("Username: ")
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise UsageError("a user name and a password are required")
    creds = auth.Credentials(username, password)
    with Registry(registry, args.tls_verify) as reg:
        reg.check_login(creds)
    auth.store(registry, creds)
    print("Login Succeeded!")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    from rootless.registry import auth

    registry = _registry(args.registry or "docker.io")
    if not auth.remove(registry):
        raise UsageError(f"not logged in to {registry}")
    print(f"Removed login credentials for {registry}")
    return 0
