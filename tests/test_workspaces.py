"""A workspace is a value: two open at once, each with its own client, pool and pace."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Rate, Secret, Settings, Workspace, build_settings
from pipeline.twenty import ObjectNames
from pipeline.twenty.pacing import LimitNews
from pipeline.twenty.paginate import collect
from pipeline.workspace import open_workspace

COMPANIES = ObjectNames("company", "companies")


async def test_two_sandboxes_open_at_once_keep_their_own_client_and_pacing(
    tmp_path: Path,
) -> None:
    source = Workspace(sandbox=tmp_path / "source.sqlite", rate=Rate(1000, 1), api="rest")
    target = Workspace(sandbox=tmp_path / "target.sqlite", rate=Rate(500, 1), concurrency=2)
    companies = [
        {"name": f"Company {i}", "domainName": {"primaryLinkUrl": f"https://c{i}.example.com"}}
        for i in range(5)
    ]
    async with open_workspace(source) as reading, open_workspace(target) as writing:
        assert reading.session is not writing.session
        assert reading._http is not writing._http
        assert reading._pacer is not writing._pacer
        assert (reading.api, writing.api) == ("rest", "graphql")
        assert reading.pace_interval == pytest.approx(0.001)
        assert writing.pace_interval == pytest.approx(0.002)

        await reading.upsert_many(COMPANIES, companies)
        before = await collect(writing.iter_pages(COMPANIES))
        copied = await collect(reading.iter_pages(COMPANIES))
        mine = [
            {"id": c["id"], "name": c["name"], "domainName": c["domainName"]}
            for c in copied
            if str(c["name"]).startswith("Company ")
        ]
        await writing.upsert_many(COMPANIES, mine)
        after = await collect(writing.iter_pages(COMPANIES))

        for moment in (1.0, 2.0):  # 429s from one workspace slow that one only
            reading._pacer.started(moment)
            reading._pacer.refused(moment, moment, LimitNews())
        assert reading.pace_interval > 0.001
        assert writing.pace_interval == pytest.approx(0.002)

    assert len(mine) == 5
    assert {c["id"] for c in mine} <= {c["id"] for c in after}
    assert not {c["id"] for c in mine} & {c["id"] for c in before}
    assert (reading.stats.writes, writing.stats.writes) == (1, 1)
    assert reading.stats.reads >= 1 and writing.stats.reads >= 2
    assert reading._http.is_closed and writing._http.is_closed


async def test_open_workspace_takes_settings_or_their_workspace(tmp_path: Path) -> None:
    settings = build_settings({"sandbox": str(tmp_path / "ws.sqlite"), "rate": "1000/1"}, {})
    assert settings.workspace.sandbox == tmp_path / "ws.sqlite"
    async with open_workspace(settings) as by_settings:
        objects = await by_settings.metadata_objects()
    async with open_workspace(settings.workspace) as by_workspace:
        assert [o["id"] for o in await by_workspace.metadata_objects()] == [
            o["id"] for o in objects
        ]


def test_settings_read_their_workspace_under_the_former_names() -> None:
    workspace = Workspace(
        url="https://crm.example.com",
        key=Secret("sk-1"),
        key_source="TWENTY_API_KEY",
        api="rest",
        rate=Rate(10, 1),
        concurrency=2,
        call_deadline=9.0,
    )
    settings = Settings(workspace, batch_size=20)
    assert (settings.api_url, settings.api_key, settings.api_key_source) == (
        "https://crm.example.com",
        Secret("sk-1"),
        "TWENTY_API_KEY",
    )
    assert (settings.api, settings.rate, settings.concurrency) == ("rest", Rate(10, 1), 2)
    assert (settings.call_deadline, settings.batch_size) == (9.0, 20)
    assert Settings(api_url="https://crm.example.com", api_key=Secret("sk-1")).workspace == (
        Workspace(url="https://crm.example.com", key=Secret("sk-1"))
    )
    assert "sk-1" not in repr(settings)
    with pytest.raises(TypeError, match="not both"):
        Settings(workspace, api="graphql")


def test_build_settings_fills_the_workspace() -> None:
    env = {"TWENTY_API_URL": "https://crm.example.com/", "TWENTY_API_KEY": "sk-2"}
    settings = build_settings({"api": "rest", "concurrency": "3"}, env)
    assert settings.workspace == Workspace(
        url="https://crm.example.com",
        key=Secret("sk-2"),
        key_source="TWENTY_API_KEY",
        api="rest",
        concurrency=3,
    )
