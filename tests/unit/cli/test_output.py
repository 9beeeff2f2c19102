"""Sizes and ages print the way Docker prints them."""
from __future__ import annotations

import pytest

from rootless.cli.output import human_age, human_size


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
