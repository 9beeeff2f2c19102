"""`rl pull`, `rl push`, `rl login` and `rl logout`."""
from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable

from rootless.cli.common import open_store
from rootless.errors import UsageError

TYPE_CHECKING = False  # typing is for the type checker only: importing it costs every start ~2 ms
if TYPE_CHECKING:
    from rich.progress import TaskID

    from rootless.registry.pull import PullResult
    from rootless.store.store import Store


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
        if args.quiet or not sys.stderr.isatty():
            result = pull(store, args.name, args.platform, args.tls_verify, _progress(args.quiet))
        else:
            result = _pull_with_bars(store, args)
    print(result.image.id)
    return 0


def _pull_with_bars(store: Store, args: argparse.Namespace) -> PullResult:
    """On a terminal: a bar per layer being downloaded, the other lines printed above them."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    from rootless.registry.pull import pull

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=Console(stderr=True)) as bars:
        tasks: dict[str, TaskID] = {}

        def progress(digest: str, done: int, total: int) -> None:
            if digest not in tasks:  # each blob is downloaded by one thread: no race here
                tasks[digest] = bars.add_task(digest.removeprefix("sha256:")[:12], total=total)
            bars.update(tasks[digest], completed=done)

        def say(line: str) -> None:
            bars.console.print(line, markup=False, highlight=False)

        return pull(store, args.name, args.platform, args.tls_verify, say, progress)


def cmd_push(args: argparse.Namespace) -> int:
    from rootless.registry.push import push

    with open_store(args) as store:
        compression = None if args.compression == "none" else args.compression
        push(store, args.image, args.destination, args.tls_verify, _progress(args.quiet), compression)
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


def cmd_manifest_inspect(args: argparse.Namespace) -> int:
    """The manifest as received (an index for a multi-platform image), indented for reading."""
    import json

    from rootless.image.reference import parse
    from rootless.registry.client import Registry

    ref = parse(args.name)
    with Registry(ref.domain, args.tls_verify) as reg:
        fetched = reg.get_manifest(ref.path, ref.digest or ref.tag or "latest")
    try:
        text = json.dumps(json.loads(fetched.data), indent=4)
    except ValueError:
        text = fetched.data.decode(errors="replace")
    sys.stdout.write(text + "\n")
    return 0
