"""runota raises its open-files limit: each vehicle on the MQTT front holds two descriptors."""

from __future__ import annotations

import io
import resource

import pytest

from otaproject.management.commands.runota import (
    DESCRIPTORS_PER_VEHICLE,
    RESERVED_DESCRIPTORS,
    Command,
    raise_open_files_limit,
)


@pytest.fixture
def low_soft_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 512:
        pytest.skip(f"the hard open-files limit {hard} leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    yield hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_soft_limit_is_raised_to_the_hard_one(low_soft_limit) -> None:
    limit, vehicles = raise_open_files_limit()

    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == limit
    if low_soft_limit != resource.RLIM_INFINITY:
        assert limit == low_soft_limit
    assert vehicles == (limit - RESERVED_DESCRIPTORS) // DESCRIPTORS_PER_VEHICLE


def _announced(limit: int, vehicles: int) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    Command(stdout=out, stderr=err)._announce_open_files(limit, vehicles)
    return out.getvalue(), err.getvalue()


def test_a_limit_below_the_connection_bound_is_named_with_the_fix(settings) -> None:
    settings.OTA_MAX_CONNECTIONS = 4096
    out, err = _announced(1024, 362)
    assert "open files     1024 (about 362 vehicles on the MQTT front)" in out
    assert "holds about 362 vehicles, fewer than OTA_MAX_CONNECTIONS=4096" in err
    assert "LimitNOFILE" in err


def test_a_limit_that_holds_the_connection_bound_warns_of_nothing(settings) -> None:
    settings.OTA_MAX_CONNECTIONS = 4096
    out, err = _announced(20000, 4096)
    assert "about 4096 vehicles" in out
    assert err == ""
