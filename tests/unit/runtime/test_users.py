"""-u and USER resolve against the image's /etc/passwd and /etc/group the way runc resolves them."""
from __future__ import annotations

import re

import pytest

from rootless.errors import RlError, UsageError
from rootless.runtime.users import ResolvedUser, resolve_user

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment line
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
app:x:1000:1000::/home/app:/bin/sh
nohome:x:1001:1001:::/bin/sh
+nisuser::::::
broken:x:notanumber:5:::
short:x
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
app:x:2000:2000:second app:/elsewhere:/bin/sh
"""

GROUP = """\
root:x:0:
wheel:x:10:root, app
adm:x:4:app,daemon
www-data:x:33:
app:x:1000:
staff:x:50:
# comment
bad:x:nope:app
nogroup:x:65534:
"""


def test_no_user_means_root_with_roots_groups() -> None:
    assert resolve_user(None, PASSWD, GROUP) == ResolvedUser(0, 0, (10,), "/root", "root")
    assert resolve_user("", PASSWD, GROUP) == resolve_user(None, PASSWD, GROUP)


def test_image_without_passwd_runs_root_at_slash() -> None:
    assert resolve_user(None, None, None) == ResolvedUser(0, 0, (), "/", None)
    assert resolve_user("0", None, None) == ResolvedUser(0, 0, (), "/", None)


def test_user_by_name_gets_its_ids_home_and_groups() -> None:
    assert resolve_user("nobody", PASSWD, GROUP) == ResolvedUser(65534, 65534, (), "/nonexistent", "nobody")
    assert resolve_user("app", PASSWD, GROUP) == ResolvedUser(1000, 1000, (10, 4), "/home/app", "app")


def test_first_matching_entry_wins() -> None:
    assert resolve_user("app", PASSWD, GROUP).uid == 1000


def test_user_by_number_found_in_passwd() -> None:
    assert resolve_user("33", PASSWD, GROUP) == ResolvedUser(33, 33, (), "/var/www", "www-data")


def test_unknown_uid_is_fine_with_group_0_and_home_slash() -> None:
    assert resolve_user("4242", PASSWD, GROUP) == ResolvedUser(4242, 0, (), "/", None)
    assert resolve_user("4242:4343", PASSWD, GROUP) == ResolvedUser(4242, 4343, (), "/", None)


def test_explicit_group_replaces_primary_and_drops_membership_groups() -> None:
    assert resolve_user("app:staff", PASSWD, GROUP) == ResolvedUser(1000, 50, (), "/home/app", "app")
    assert resolve_user("app:77", PASSWD, GROUP) == ResolvedUser(1000, 77, (), "/home/app", "app")
    assert resolve_user("4242:www-data", PASSWD, GROUP) == ResolvedUser(4242, 33, (), "/", None)


def test_group_alone_applies_to_root() -> None:
    assert resolve_user(":staff", PASSWD, GROUP) == ResolvedUser(0, 50, (), "/root", "root")


def test_empty_home_field_means_slash() -> None:
    assert resolve_user("nohome", PASSWD, GROUP).home == "/"


def test_unknown_user_name_is_docker_s_message() -> None:
    with pytest.raises(RlError) as info:
        resolve_user("ghost", PASSWD, GROUP)
    assert str(info.value) == "unable to find user ghost: no matching entries in passwd file"
    with pytest.raises(RlError) as info:
        resolve_user("root", None, GROUP)
    assert str(info.value) == "unable to find user root: no matching entries in passwd file"


def test_malformed_entries_never_match() -> None:
    for name in ("broken", "short", "+nisuser"):
        with pytest.raises(RlError, match=re.escape(f"unable to find user {name}:")):
            resolve_user(name, PASSWD, GROUP)


def test_unknown_group_name_is_refused() -> None:
    with pytest.raises(RlError) as info:
        resolve_user("app:ghosts", PASSWD, GROUP)
    assert str(info.value) == "unable to find group ghosts: no matching entries in group file"
    with pytest.raises(RlError, match="unable to find group staff:"):
        resolve_user("app:staff", PASSWD, None)
    with pytest.raises(RlError, match="unable to find group bad:"):
        resolve_user("app:bad", PASSWD, GROUP)


def test_group_add_by_name_or_number_after_membership_groups() -> None:
    user = resolve_user("app", PASSWD, GROUP, ["staff", "4", "999", "wheel"])
    assert user.groups == (10, 4, 50, 999)
    assert resolve_user("4242:7", PASSWD, GROUP, ["www-data"]).groups == (33,)
    assert resolve_user(None, None, None, ["5"]).groups == (5,)


def test_group_add_unknown_name_is_refused() -> None:
    with pytest.raises(RlError, match="unable to find group ghosts:"):
        resolve_user("app", PASSWD, GROUP, ["ghosts"])


@pytest.mark.parametrize("spec, message", [
    ("-1", "uid -1 is out of range"),
    ("2147483648", "uid 2147483648 is out of range"),
    ("app:-5", "gid -5 is out of range"),
    ("a:b:c", "invalid user 'a:b:c'"),
])
def test_bad_specs_are_usage_errors(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        resolve_user(spec, PASSWD, GROUP)


def test_out_of_range_group_add_is_refused() -> None:
    with pytest.raises(UsageError, match="gid 4294967296 is out of range"):
        resolve_user("app", PASSWD, GROUP, ["4294967296"])
