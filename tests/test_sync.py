"""Incremental sync: rows Twenty already holds as they are are not sent again.

Write calls are counted by a transport between the client and the sandbox (what went
on the wire), not by the client's own statistics.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from pipeline.config import Rate, Secret
from pipeline.mapping import load_mapping
from pipeline.reports import ImportReport
from pipeline.runner import import_file
from pipeline.sandbox import Sandbox
from pipeline.twenty import TwentyClient
from tests.test_import import project, sandbox
from tests.test_state import interrupted_import, many_mapping

__all__ = ["project", "sandbox"]


class CountingTransport(httpx.AsyncBaseTransport):
    """The sandbox, counting the calls that reach it by kind."""

    def __init__(self, box: Sandbox) -> None:
        self.inner = httpx.ASGITransport(app=box.app)
        self.calls: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/graphql":
            self.calls["write" if b"mutation" in request.content else "read"] += 1
        elif path.startswith("/rest/"):
            self.calls["read" if request.method == "GET" else "write"] += 1
        else:
            self.calls["metadata"] += 1
        return await self.inner.handle_async_request(request)


def people_rows(n: int, renamed: dict[int, str] | None = None) -> list[str]:
    names = renamed or {}
    return [f"p{i}@x.io,{names.get(i, f'P{i}')}" for i in range(n)]


def write_people(project: Path, name: str, rows: list[str]) -> Path:
    source = project / name
    source.write_text("\n".join(["email,first", *rows]) + "\n", encoding="utf-8")
    return source


async def sync(
    project: Path, box: Sandbox, source: Path, *, incremental: bool = True, **kw: Any
) -> tuple[ImportReport, Counter[str]]:
    transport = CountingTransport(box)
    client = TwentyClient(
        base_url="http://sandbox",
        api_key=Secret(box.api_key),
        rate=Rate(10_000, 1),
        transport=transport,
    )
    async with client:
        report = await import_file(
            load_mapping(project / "mappings" / "many.yaml"),
            client,
            state_dir=project / "state",
            source=source,
            incremental=incremental,
            **kw,
        )
    return report, transport.calls


async def test_an_unchanged_rerun_makes_no_write_call(project: Path, sandbox: Sandbox) -> None:
    many_mapping(project)
    rows = people_rows(3_000)
    first, calls = await sync(project, sandbox, write_people(project, "mon.csv", rows))
    assert (first.created, first.unchanged, calls["write"]) == (3_000, 0, 50)
    before = {e: p["updatedAt"] for e, p in (await stored_people_all(sandbox)).items()}

    # the same records in another order: another file, nothing to send
    again, calls = await sync(project, sandbox, write_people(project, "tue.csv", rows[::-1]))
    assert (again.rows_read, again.unchanged, again.loaded, again.rejected) == (3_000, 3_000, 0, 0)
    assert calls["write"] == 0
    assert {e: p["updatedAt"] for e, p in (await stored_people_all(sandbox)).items()} == before


async def test_seven_changed_rows_are_sent_in_one_write_call(
    project: Path, sandbox: Sandbox
) -> None:
    many_mapping(project)
    await sync(project, sandbox, write_people(project, "mon.csv", people_rows(3_000)))
    changed = {
        3: "Zoë",
        400: "Ann",
        999: "Bob",
        1_500: "Cy",
        2_001: "Dé",
        2_500: "Eve",
        2_999: "Fü",
    }
    report, calls = await sync(
        project, sandbox, write_people(project, "tue.csv", people_rows(3_000, changed))
    )
    assert (report.updated, report.unchanged, report.created) == (7, 2_993, 0)
    assert calls["write"] == 1
    stored = await stored_people_all(sandbox)
    for i in range(3_000):
        assert stored[f"p{i}@x.io"]["name"]["firstName"] == changed.get(i, f"P{i}")


async def test_without_incremental_every_row_is_sent(project: Path, sandbox: Sandbox) -> None:
    many_mapping(project)
    rows = people_rows(120)
    await sync(project, sandbox, write_people(project, "mon.csv", rows))
    report, calls = await sync(
        project, sandbox, write_people(project, "tue.csv", rows[::-1]), incremental=False
    )
    assert (report.updated, report.unchanged, calls["write"]) == (120, 0, 2)


async def test_a_changed_mapping_sends_everything_once_then_is_incremental_again(
    project: Path, sandbox: Sandbox
) -> None:
    mapping = many_mapping(project)
    rows = people_rows(100)
    await sync(project, sandbox, write_people(project, "mon.csv", rows))
    mapping.write_text(mapping.read_text() + "# reviewed\n", encoding="utf-8")
    report, calls = await sync(project, sandbox, write_people(project, "tue.csv", rows[::-1]))
    assert (report.updated, report.unchanged, calls["write"]) == (100, 0, 2)
    report, calls = await sync(project, sandbox, write_people(project, "wed.csv", rows))
    assert (report.unchanged, calls["write"]) == (100, 0)


async def test_a_record_deleted_in_the_workspace_since_is_sent_again(
    project: Path, sandbox: Sandbox
) -> None:
    many_mapping(project)
    rows = people_rows(50)
    await sync(project, sandbox, write_people(project, "mon.csv", rows))
    await soft_delete(sandbox, (await stored_people_all(sandbox))["p7@x.io"]["id"])
    report, calls = await sync(project, sandbox, write_people(project, "tue.csv", rows[::-1]))
    assert (report.restored, report.unchanged, calls["write"]) == (1, 49, 1)
    assert (await stored_people_all(sandbox))["p7@x.io"]["deletedAt"] is None


async def test_hashes_advance_only_for_rows_twenty_confirmed(
    project: Path, sandbox: Sandbox
) -> None:
    mapping = many_mapping(project)
    await sync(project, sandbox, write_people(project, "mon.csv", people_rows(100)))
    renamed = {i: f"New{i}" for i in range(100)}
    tuesday = write_people(project, "tue.csv", people_rows(100, renamed))
    # two batches of 10 confirmed, then the workspace refuses every write
    await interrupted_import(project, sandbox, mapping, tuesday, 2, batch_size=10, incremental=True)
    # a new file (Tuesday's rows in another order) starts a new run: the 20 confirmed
    # are unchanged now, the 80 never confirmed are sent
    report, calls = await sync(
        project,
        sandbox,
        write_people(project, "wed.csv", people_rows(100, renamed)[::-1]),
        restart=True,
    )
    assert (report.updated, report.unchanged) == (80, 20)
    assert calls["write"] == 2
    assert all(
        p["name"]["firstName"] == f"New{p['emails']['primaryEmail'][1:-5]}"
        for p in (await stored_people_all(sandbox)).values()
    )


def rest(box: Sandbox) -> httpx.AsyncClient:
    """A plain HTTP client on the sandbox, to look at the workspace over its REST API."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=box.app),
        base_url="http://sandbox",
        headers={"Authorization": f"Bearer {box.api_key}"},
    )


async def stored_people_all(box: Sandbox) -> dict[str, dict[str, Any]]:
    """Every person, soft-deleted ones included, by e-mail, read over the REST API."""
    found: dict[str, dict[str, Any]] = {}
    async with rest(box) as http:
        for flt in (None, "deletedAt[is]:NOT_NULL"):
            after: str | None = None
            while True:
                params: dict[str, Any] = {"limit": 200}
                if flt:
                    params["filter"] = flt
                if after:
                    params["starting_after"] = after
                body = (await http.get("/rest/people", params=params)).json()
                for record in body["data"]["people"]:
                    found[record["emails"]["primaryEmail"]] = record
                if not body["pageInfo"]["hasNextPage"]:
                    break
                after = body["pageInfo"]["endCursor"]
    return found


async def soft_delete(box: Sandbox, record_id: str) -> None:
    async with rest(box) as http:
        (await http.delete(f"/rest/people/{record_id}?soft_delete=true")).raise_for_status()


async def test_a_changed_link_counts_as_a_change(project: Path, sandbox: Sandbox) -> None:
    (project / "mappings" / "many.yaml").write_text(
        "version: 1\nobject: person\nkey: [emails.primaryEmail]\nfields:\n"
        "  emails.primaryEmail: email\n  name.firstName: first\n"
        "  company: {column: site, lookup: domainName.primaryLinkUrl, on_missing: reject}\n",
        encoding="utf-8",
    )
    async with rest(sandbox) as http:
        for name in ("acme", "globex"):
            body = {"name": name, "domainName": {"primaryLinkUrl": f"https://{name}.com"}}
            (await http.post("/rest/companies", json=body)).raise_for_status()

    def file(name: str, site_of_p1: str) -> Path:
        rows = ["p0@x.io,P0,acme.com", f"p1@x.io,P1,{site_of_p1}"]
        source = project / name
        source.write_text("email,first,site\n" + "\n".join(rows) + "\n", encoding="utf-8")
        return source

    await sync(project, sandbox, file("mon.csv", "acme.com"))
    report, calls = await sync(project, sandbox, file("tue.csv", "globex.com"))
    assert (report.updated, report.unchanged, calls["write"]) == (1, 1, 1)
    stored = await stored_people_all(sandbox)
    async with rest(sandbox) as http:
        found = (await http.get("/rest/companies", params={"filter": "name[eq]:globex"})).json()
    assert stored["p1@x.io"]["companyId"] == found["data"]["companies"][0]["id"]


async def test_an_unchanged_rerun_with_links_reads_only_the_soft_deleted_keys(
    project: Path, sandbox: Sandbox
) -> None:
    (project / "mappings" / "many.yaml").write_text(
        "version: 1\nobject: person\nkey: [emails.primaryEmail]\nfields:\n"
        "  emails.primaryEmail: email\n  name.firstName: first\n"
        "  company: {column: site, lookup: domainName.primaryLinkUrl, on_missing: reject}\n",
        encoding="utf-8",
    )
    async with rest(sandbox) as http:
        body = {"name": "acme", "domainName": {"primaryLinkUrl": "https://acme.com"}}
        (await http.post("/rest/companies", json=body)).raise_for_status()
    source = project / "mon.csv"
    rows = [f"p{i}@x.io,P{i},acme.com" for i in range(120)]
    source.write_text("email,first,site\n" + "\n".join(rows) + "\n", encoding="utf-8")
    first, _ = await sync(project, sandbox, source)
    assert first.created == 120 and first.calls["reads"] >= 2  # the companies were read

    again, calls = await sync(project, sandbox, source, restart=True)
    assert again.unchanged == 120 and calls["write"] == 0
    # the start reads only the metadata and whether any person was soft-deleted since:
    # no lookup of companies, since no row is sent
    assert again.calls["reads"] == 1


async def test_an_incremental_rerun_of_the_same_file_retries_its_rejected_rows(
    project: Path, sandbox: Sandbox
) -> None:
    """A nightly sync of an unchanged file is not "already imported": rows rejected last
    night (here, their company was missing) are judged again; the others cost nothing."""
    mapping = project / "mappings" / "many.yaml"
    mapping.write_text(
        "version: 1\nobject: person\nkey: [emails.primaryEmail]\nfields:\n"
        "  emails.primaryEmail: email\n  name.firstName: first\n"
        "  company: {column: domain, lookup: domainName.primaryLinkUrl, on_missing: reject}\n",
        encoding="utf-8",
    )
    source = project / "people.csv"
    source.write_text(
        "email,first,domain\n"
        + "".join(f"p{i}@x.io,P{i},{'acme.io' if i % 10 == 0 else ''}\n" for i in range(100)),
        encoding="utf-8",
    )
    first, _ = await sync(project, sandbox, source)
    assert (first.created, first.rejected, first.exit_code) == (90, 10, 3)

    async with rest(sandbox) as http:
        answer = await http.post(
            "/rest/companies",
            json={"name": "Acme", "domainName": {"primaryLinkUrl": "https://acme.io"}},
        )
        assert answer.status_code == 201, answer.text
        acme = answer.json()["data"]["createCompany"]["id"]

    again, calls = await sync(project, sandbox, source)
    assert not again.already_done
    assert (again.created, again.unchanged, again.rejected, again.exit_code) == (10, 90, 0, 0)
    assert calls["write"] == 1
    stored = await stored_people_all(sandbox)
    assert len(stored) == 100
    assert {e for e, p in stored.items() if p["companyId"] == acme} == {
        f"p{i}@x.io" for i in range(0, 100, 10)
    }

    # without --incremental the same file is still "already imported": nothing sent
    plain, calls = await sync(project, sandbox, source, incremental=False)
    assert plain.already_done and calls["write"] == 0
