"""Sizes, ages, times and JSON print the way Docker prints them."""
from __future__ import annotations

import time

import pytest

from rootless.cli.output import docker_rfc3339, docker_time, go_json, human_age, human_size


@pytest.mark.parametrize("n, text", [(0, "0B"), (999, "999B"), (2_140_000, "2.14MB"), (128_456_789, "128MB"),
                                     (1_500_000_000, "1.5GB")])
def test_human_size(n: int, text: str) -> None:
    assert human_size(n) == text


@pytest.mark.parametrize("age, text", [(0.2, "Less than a second ago"), (1, "1 second ago"), (30, "30 seconds ago"),
                                       (90, "About a minute ago"), (600, "10 minutes ago"),
                                       (3600, "About an hour ago"), (5 * 3600, "5 hours ago"),
                                       (3 * 86400, "3 days ago"), (20 * 86400, "2 weeks ago"),
                                       (100 * 86400, "3 months ago"), (800 * 86400, "2 years ago")])
def test_human_age(age: float, text: str) -> None:
    assert human_age(1_000_000_000 - age, now=1_000_000_000) == text


@pytest.mark.parametrize("tz, text, rfc3339", [
    ("UTC", "2026-12-05 23:40:32 +0000 UTC", "2026-12-05T23:40:32Z"),
    ("CET-1", "2026-12-06 00:40:32 +0100 CET", "2026-12-06T00:40:32+01:00"),
    ("NST+3:30", "2026-12-05 20:10:32 -0330 NST", "2026-12-05T20:10:32-03:30"),
])
def test_times_are_go_s_in_the_local_zone(tz: str, text: str, rfc3339: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        assert (docker_time(1_796_514_032.7), docker_rfc3339(1_796_514_032.7)) == (text, rfc3339)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_go_json_is_compact_and_keeps_characters() -> None:
    assert go_json({"Command": "\"sleep 1…\"", "Names": "<a&b>", "N": [1, 2]}) == \
        '{"Command":"\\"sleep 1…\\"","Names":"<a&b>","N":[1,2]}'
