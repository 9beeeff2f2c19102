"""--userns keep-id: the id map and the owners of shifted layer copies."""
from __future__ import annotations

import pytest

from rootless.errors import UsageError
from rootless.userns.idmap import IdMapping, IdRange
from rootless.userns.keepid import _shift, check_mode, keep_id_mapping

SUBUID = IdMapping("subuid", (IdRange(0, 1001, 1), IdRange(1, 100000, 65536)),
                   (IdRange(0, 1002, 1), IdRange(1, 200000, 65536)), "test")


def test_keep_id_maps_the_user_to_itself_and_keeps_every_other_id() -> None:
    m = keep_id_mapping(SUBUID)
    assert m.host_uid(1001) == 1001 and m.host_gid(1002) == 1002
    assert m.host_uid(0) == 100000 and m.host_uid(1000) == 101000 and m.host_uid(1002) == 101001
    assert m.size == SUBUID.size, "no id of the range is lost"
    hosts = {m.host_uid(i) for i in range(m.size)}
    assert hosts == {SUBUID.host_uid(i) for i in range(SUBUID.size)}


def test_shifted_owner_shows_the_image_owner_under_keep_id() -> None:
    keep = keep_id_mapping(SUBUID)
    shift = _shift(1001)
    for image_uid in (0, 1, 999, 1000, 1001, 1002, 65535):
        # The file is re-owned to default-mapping id shift(u): keep-id must show it as u.
        on_host = SUBUID.host_uid(shift(image_uid))
        assert keep.container_uid(on_host) == image_uid  # type: ignore[arg-type]


def test_single_id_keep_id_maps_only_the_user() -> None:
    single = IdMapping("single", (IdRange(0, 1001, 1),), (IdRange(0, 1001, 1),), "test")
    m = keep_id_mapping(single)
    assert m.host_uid(1001) == 1001 and m.host_uid(0) is None


def test_range_too_small_for_the_uid_is_refused() -> None:
    small = IdMapping("subuid", (IdRange(0, 5000, 1), IdRange(1, 100000, 1000)),
                      (IdRange(0, 5000, 1), IdRange(1, 100000, 1000)), "test")
    with pytest.raises(UsageError, match="more than 5000 subordinate ids"):
        keep_id_mapping(small)


def test_modes() -> None:
    assert check_mode("keep-id") == "keep-id" and check_mode("") == "" and check_mode("host") == ""
    with pytest.raises(UsageError):
        check_mode("auto")
