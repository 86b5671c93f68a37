"""export: every record once, flattened by its codec, filtered, resumable (issue 11)."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from pipeline.config import Rate, Secret
from pipeline.errors import ConfigError
from pipeline.export import ExportOptions, export_object
from pipeline.fields import codec_for
from pipeline.mapping import load_mapping
from pipeline.runner import import_file
from pipeline.sandbox import Sandbox, SandboxOptions
from pipeline.schema import load_schema
from pipeline.twenty import TwentyClient
from tests.conftest import Served

ROOT = Path(__file__).resolve().parents[1]
COMPANIES = "name,domain,employees,city,arr\n" + "".join(
    f"Company {i},c{i}.example.com,{i * 10},{'Paris' if i % 3 == 0 else 'Oslo'},{-i * 1.5}\n"
    for i in range(450)
)
COMPANY_MAPPING = """
object: company
key: [domainName.primaryLinkUrl]
fields:
  name: name
  domainName.primaryLinkUrl: domain
  employees: employees
  address.addressCity: city
  annualRecurringRevenue: {column: arr, currency: EUR}
"""


def client_for(box: Sandbox) -> TwentyClient:
    return TwentyClient(
        base_url="http://sandbox",
        api_key=Secret(box.api_key),
        rate=Rate(1000, 1),
        transport=httpx.ASGITransport(app=box.app),
    )


@pytest.fixture
def seeded(tmp_path: Path) -> Any:
    """A sandbox holding 450 companies (three pages), loaded through the import path."""
    box = Sandbox(tmp_path / "source.sqlite", SandboxOptions(throttle=False))
    source = tmp_path / "companies.csv"
    source.write_text(COMPANIES)
    mapping = tmp_path / "companies.yaml"
    mapping.write_text(COMPANY_MAPPING)

    async def load() -> None:
        async with client_for(box) as client:
            report = await import_file(
                load_mapping(mapping), client, state_dir=tmp_path / "state", source=source
            )
        assert report.created == 450

    yield box, load
    box.close()


async def run_export(
    box: Sandbox, output: Path, state: Path, readers: int = 1, **options: Any
) -> Any:
    async with client_for(box) as client:
        schema = await load_schema(client)
        report = await export_object(
            client,
            schema,
            "company",
            output,
            state_dir=state,
            options=ExportOptions(**options),
            readers=readers,
        )
    return report


def stored(box: Sandbox) -> dict[str, dict[str, Any]]:
    records = box.engine.find_many(box.engine.object("company"), limit=1000).records
    return {r["id"]: r for r in records}


async def test_every_record_once_with_its_values_flattened(seeded: Any, tmp_path: Path) -> None:
    box, load = seeded
    await load()
    output = tmp_path / "companies.csv"
    report = await run_export(box, output, tmp_path / "state")
    with output.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert report.records == len(rows) == 450
    assert report.pages == 3 and report.calls["reads"] == 3
    assert report.total == 450
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == 450  # no record twice
    records = stored(box)
    assert set(by_id) == set(records)
    sample = next(r for r in records.values() if r["name"] == "Company 7")
    row = by_id[sample["id"]]
    assert row["name"] == "Company 7"
    assert row["domainName.primaryLinkUrl"] == sample["domainName"]["primaryLinkUrl"]
    assert row["employees"] == "70"
    assert row["address.addressCity"] == "Oslo"
    assert row["annualRecurringRevenue.amountMicros"] == "'-10500000"  # escaped: starts with -
    assert row["annualRecurringRevenue.currencyCode"] == "EUR"
    assert "deletedAt" not in row
    assert next(iter(rows[0])) == "id"
    assert report.next_since == max(r["updatedAt"] for r in records.values())


async def test_parquet_keeps_values_and_units_are_exact(seeded: Any, tmp_path: Path) -> None:
    box, load = seeded
    await load()
    output = tmp_path / "companies.parquet"
    await run_export(box, output, tmp_path / "state", money="units")
    frame = pl.read_parquet(output)
    row = frame.filter(pl.col("name") == "Company 7").row(0, named=True)
    assert row["annualRecurringRevenue.amount"] == "-10.5"
    assert "annualRecurringRevenue.amountMicros" not in frame.columns


async def test_a_file_exported_imports_into_another_workspace_as_it_was(
    seeded: Any, tmp_path: Path
) -> None:
    """Parquet round trip through the codecs' own reimport specs: same records, same ids."""
    box, load = seeded
    await load()
    output = tmp_path / "companies.parquet"
    fields = ("id", "name", "domainName", "employees", "address", "annualRecurringRevenue")
    await run_export(box, output, tmp_path / "state", fields=fields)
    async with client_for(box) as client:
        schema = await load_schema(client)
    obj = schema.object("company")
    assert obj is not None
    specs: dict[str, Any] = {}
    for name in fields:
        item = obj.field(name)
        assert item is not None
        specs.update(codec_for(item.type).reimport(name))
    mapping = tmp_path / "back.yaml"
    mapping.write_text(
        json.dumps({"version": 1, "object": "company", "key": ["id"], "fields": specs})
    )
    target = Sandbox(tmp_path / "target.sqlite", SandboxOptions(throttle=False))
    try:
        async with client_for(target) as client:
            report = await import_file(
                load_mapping(mapping), client, state_dir=tmp_path / "state2", source=output
            )
        assert report.created == 450 and report.rejected == 0
        copied = stored(target)
    finally:
        target.close()
    original = stored(box)
    assert set(copied) == set(original)  # the same ids
    for record_id, record in original.items():
        for name in fields:
            assert copied[record_id][name] == record[name], (record_id, name)


async def test_deleted_records_only_when_asked(seeded: Any, tmp_path: Path) -> None:
    box, load = seeded
    await load()
    obj = box.engine.object("company")
    box.engine.delete(
        obj, {"domainName": {"primaryLinkUrl": {"eq": "https://c3.example.com"}}}, soft=True
    )
    live = await run_export(box, tmp_path / "live.csv", tmp_path / "s1")
    everything = await run_export(
        box, tmp_path / "all.parquet", tmp_path / "s2", include_deleted=True
    )
    assert (live.records, everything.records) == (449, 450)
    frame = pl.read_parquet(tmp_path / "all.parquet")
    deleted = frame.filter(pl.col("deletedAt").is_not_null())
    assert deleted["name"].to_list() == ["Company 3"]


async def test_filter_and_since(seeded: Any, tmp_path: Path) -> None:
    box, load = seeded
    await load()
    report = await run_export(
        box, tmp_path / "paris.csv", tmp_path / "s1", filter="address.addressCity[eq]:Paris"
    )
    assert report.records == 150
    assert report.next_since is not None
    newer = await run_export(box, tmp_path / "since.csv", tmp_path / "s2", since=report.next_since)
    latest = report.next_since
    expected = sum(1 for r in stored(box).values() if r["updatedAt"] >= latest)
    assert newer.records == expected >= 1


async def test_a_bad_filter_is_refused_before_any_read(seeded: Any, tmp_path: Path) -> None:
    box, _ = seeded
    async with client_for(box) as client:
        schema = await load_schema(client)
        with pytest.raises(ConfigError) as info:
            await export_object(
                client,
                schema,
                "company",
                tmp_path / "x.csv",
                state_dir=tmp_path / "state",
                options=ExportOptions(filter="nmae[eq]:x,name[equals]:y", fields=("nope",)),
            )
        assert client.stats.reads == 0
    assert info.value.problems == ["--fields: company has no field 'nope'"]
    with pytest.raises(ConfigError) as info:
        async with client_for(box) as client:
            await export_object(
                client,
                schema,
                "company",
                tmp_path / "x.csv",
                state_dir=tmp_path / "state",
                options=ExportOptions(filter="nmae[eq]:x,name[equals]:y"),
            )
    assert len(info.value.problems) == 2
    assert not (tmp_path / "x.csv").exists()


def test_killed_export_resumes_with_every_record_exactly_once(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    """kill -9 during a paced export over loopback, then the same command again."""
    served = serve("--no-throttle", "--latency", "150:250")
    seed = tmp_path / "notes.csv"
    seed.write_text("title\n" + "".join(f"Note {i:04d}\n" for i in range(1400)))
    mapping = tmp_path / "notes.yaml"
    mapping.write_text("object: note\nkey: [title]\nfields:\n  title: title\n")
    env = {**os.environ, "TWENTY_API_URL": served.url, "TWENTY_API_KEY": served.key}
    state = tmp_path / "state"
    base = [sys.executable, "-m", "pipeline"]
    loaded = subprocess.run(
        [*base, "import", str(mapping), str(seed), "--state-dir", str(state), "--rate", "1000/1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr
    output = tmp_path / "exported.csv"
    export = [*base, "export", "note", "-o", str(output), "--state-dir", str(state)]
    process = subprocess.Popen(
        [*export, "--rate", "2/1"], env=env, stderr=subprocess.PIPE, text=True
    )
    parts = state / "export" / "note" / "export.sqlite"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if parts.exists():
            with sqlite3.connect(parts) as db:
                try:
                    if db.execute("SELECT count(*) FROM parts").fetchone()[0] >= 2:
                        break
                except sqlite3.OperationalError:
                    pass
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.stderr is not None
    process.stderr.close()
    assert not output.exists()  # nothing half written
    done = subprocess.run(
        [*export, "--rate", "1000/1"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "resumed after" in done.stderr
    with output.open(newline="", encoding="utf-8") as handle:
        titles = [row["title"] for row in csv.DictReader(handle)]
    assert sorted(titles) == [f"Note {i:04d}" for i in range(1400)]


async def test_with_labels_a_file_links_people_in_another_workspace(tmp_path: Path) -> None:
    """Ids differ between workspaces; the company's domain, written beside companyId, does not."""
    companies = tmp_path / "companies.csv"
    companies.write_text("name,domain\nAcme,acme.com\nGlobex,globex.com\n")
    (tmp_path / "companies.yaml").write_text(
        "object: company\nkey: [domainName.primaryLinkUrl]\n"
        "fields:\n  name: name\n  domainName.primaryLinkUrl: domain\n"
    )
    people = tmp_path / "people.csv"
    people.write_text(
        "email,first,company\nada@acme.com,Ada,acme.com\nhank@globex.com,Hank,globex.com\n"
    )
    (tmp_path / "people.yaml").write_text(
        "object: person\nkey: [emails.primaryEmail]\nfields:\n"
        "  emails.primaryEmail: email\n  name.firstName: first\n"
        "  company: {column: company, lookup: domainName.primaryLinkUrl}\n"
    )
    boxes = [Sandbox(tmp_path / f"{n}.sqlite", SandboxOptions(throttle=False)) for n in ("a", "b")]
    try:
        for box, state in zip(boxes, ("sa", "sb"), strict=True):
            async with client_for(box) as client:
                await import_file(
                    load_mapping(tmp_path / "companies.yaml"),
                    client,
                    state_dir=tmp_path / state,
                    source=companies,
                )
        async with client_for(boxes[0]) as client:
            await import_file(
                load_mapping(tmp_path / "people.yaml"),
                client,
                state_dir=tmp_path / "sa",
                source=people,
            )
            schema = await load_schema(client)
            output = tmp_path / "people.parquet"
            report = await export_object(
                client,
                schema,
                "person",
                output,
                state_dir=tmp_path / "sa",
                options=ExportOptions(fields=("emails", "name", "company"), with_labels=True),
            )
        assert report.calls["reads"] == 2  # one page, one batch of labels
        frame = pl.read_parquet(output)
        assert sorted(frame["company.domainName.primaryLinkUrl"].to_list()) == [
            "https://acme.com",
            "https://globex.com",
        ]
        (tmp_path / "back.yaml").write_text(
            "object: person\nkey: [emails.primaryEmail]\nfields:\n"
            "  emails.primaryEmail: emails.primaryEmail\n  name.firstName: name.firstName\n"
            "  company: {column: company.domainName.primaryLinkUrl, lookup: domainName.primaryLinkUrl}\n"
        )
        async with client_for(boxes[1]) as client:
            loaded = await import_file(
                load_mapping(tmp_path / "back.yaml"),
                client,
                state_dir=tmp_path / "sb",
                source=output,
            )
        assert loaded.created == 2 and loaded.rejected == 0
        target = boxes[1].engine
        by_id = {
            c["id"]: c["name"] for c in target.find_many(target.object("company"), limit=10).records
        }
        linked = {
            p["emails"]["primaryEmail"]: by_id[p["companyId"]]
            for p in target.find_many(target.object("person"), limit=10).records
        }
        assert linked == {"ada@acme.com": "Acme", "hank@globex.com": "Globex"}
    finally:
        for box in boxes:
            box.close()


@pytest.mark.parametrize("readers", [2, 4])
async def test_ranges_read_side_by_side_give_every_record_once_in_id_order(
    seeded: Any, tmp_path: Path, readers: int
) -> None:
    box, load = seeded
    await load()
    output = tmp_path / "companies.parquet"
    report = await run_export(box, output, tmp_path / "state", readers=readers)
    ids = pl.read_parquet(output)["id"].to_list()
    assert ids == sorted(ids) and len(set(ids)) == len(ids) == report.records == 450
    assert set(ids) == set(stored(box))
    assert report.total == 450
    assert report.pages >= 1 + readers  # the first page, then at least one per range


async def test_an_export_stopped_among_its_ranges_resumes_exactly(
    seeded: Any, tmp_path: Path
) -> None:
    box, load = seeded
    await load()
    output, state = tmp_path / "exported.csv", tmp_path / "state"
    pages = 0

    def stop_after_two(rows: int) -> None:
        nonlocal pages
        pages += 1
        if pages == 2:
            raise RuntimeError("stopped")  # as a failure would, between two pages

    async with client_for(box) as client:
        schema = await load_schema(client)
        with pytest.raises(RuntimeError, match="stopped"):
            await export_object(
                client,
                schema,
                "company",
                output,
                state_dir=state,
                readers=3,
                on_page=stop_after_two,
            )
    assert not output.exists()
    assert (state / "export" / "company" / "export.sqlite").exists()
    report = await run_export(box, output, state, readers=3)
    assert report.resumed_pages >= 2  # what was recorded before the stop is not read again
    assert report.records == 450
    with output.open(newline="", encoding="utf-8") as handle:
        ids = [row["id"] for row in csv.DictReader(handle)]
    assert len(ids) == len(set(ids)) == 450 and ids == sorted(ids)


def test_an_export_state_of_an_older_layout_is_refused_unless_restarted(tmp_path: Path) -> None:
    from pipeline.errors import StateError
    from pipeline.export_state import ExportState

    folder = tmp_path / "export" / "company"
    folder.mkdir(parents=True)
    with sqlite3.connect(folder / "export.sqlite") as db:
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
            "CREATE TABLE parts (n INTEGER PRIMARY KEY, cursor TEXT, rows INTEGER, latest TEXT);"
            "INSERT INTO meta VALUES ('status', 'running');"
        )
    (folder / "part-000001.parquet").write_bytes(b"old")
    with pytest.raises(StateError, match="pass --restart"):
        ExportState.open(folder, "{}")
    state = ExportState.open(folder, "{}", restart=True)
    try:
        assert state.pages == 0 and state.cursor(0) is None
        assert not (folder / "part-000001.parquet").exists()
    finally:
        state.close()


async def test_exported_in_a_mappings_columns_the_file_imports_back_the_same_people(
    tmp_path: Path,
) -> None:
    """The sample people (phones, a lookup, names), exported with people.yaml's columns
    and imported with people.yaml into another workspace: the same values, field by field."""
    root = ROOT
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    for name in ("companies", "people"):
        text = (root / "mappings" / f"{name}.yaml").read_text()
        (mappings / f"{name}.yaml").write_text(
            text.replace("../sample_data", str(root / "sample_data"))
        )
    boxes = [Sandbox(tmp_path / f"{n}.sqlite", SandboxOptions(throttle=False)) for n in ("a", "b")]
    try:
        for box, state in zip(boxes, ("sa", "sb"), strict=True):
            async with client_for(box) as client:
                await import_file(
                    load_mapping(mappings / "companies.yaml"), client, state_dir=tmp_path / state
                )
        async with client_for(boxes[0]) as client:
            await import_file(
                load_mapping(mappings / "people.yaml"), client, state_dir=tmp_path / "sa"
            )
            schema = await load_schema(client)
            output = tmp_path / "people.parquet"
            report = await export_object(
                client,
                schema,
                "person",
                output,
                state_dir=tmp_path / "sa",
                options=ExportOptions(mapping=load_mapping(mappings / "people.yaml")),
            )
        assert pl.read_parquet(output).columns == [
            "First Name",
            "Last Name",
            "E-mail",
            "Phone",
            "Job Title",
            "City",
            "Company Website",
            "LinkedIn",
        ]
        async with client_for(boxes[1]) as client:
            back = await import_file(
                load_mapping(mappings / "people.yaml"),
                client,
                state_dir=tmp_path / "sb",
                source=output,
            )
        assert back.created == report.records == 6 and back.rejected == 0

        def people(box: Sandbox) -> dict[str, dict[str, Any]]:
            engine = box.engine
            domains = {
                c["id"]: c["domainName"]["primaryLinkUrl"]
                for c in engine.find_many(engine.object("company"), limit=50).records
            }
            found = engine.find_many(engine.object("person"), limit=50).records
            return {
                p["emails"]["primaryEmail"]: {
                    "name": p["name"],
                    "phones": p["phones"],
                    "jobTitle": p["jobTitle"],
                    "city": p["city"],
                    "linkedin": p["linkedinLink"]["primaryLinkUrl"],
                    "company": domains.get(p["companyId"]),
                }
                for p in found
            }

        assert people(boxes[1]) == people(boxes[0])
    finally:
        for box in boxes:
            box.close()


EVERY_TYPE: dict[str, tuple[dict[str, Any], Any]] = {
    # field type: (extra CreateFieldInput, the value stored in the record)
    "TEXT": ({}, "Zoë Ørsted, naïve café"),
    "NUMBER": ({}, 1234.5),
    "NUMERIC": ({}, 42),
    "BOOLEAN": ({}, True),
    "DATE": ({}, "2026-02-28"),
    "DATE_TIME": ({}, "2026-02-28T13:45:00.000Z"),
    "UUID": ({}, "6f1c9a52-3b1e-4e0b-9a43-0d3f1b2c4d5e"),
    "RAW_JSON": ({}, {"source": "hubspot", "score": 7, "tags": ["a", "b"]}),
    "ARRAY": ({}, ["alpha", "béta"]),
    "RATING": (
        {
            "options": [
                {"value": f"RATING_{i}", "label": str(i), "position": i} for i in range(1, 6)
            ]
        },
        "RATING_4",
    ),
    "SELECT": (
        {"options": [{"value": "GOLD", "label": "Gold", "position": 0, "color": "yellow"}]},
        "GOLD",
    ),
    "MULTI_SELECT": (
        {
            "options": [
                {"value": "EU", "label": "Europe", "position": 0, "color": "blue"},
                {"value": "US", "label": "America", "position": 1, "color": "red"},
            ]
        },
        ["EU", "US"],
    ),
    "EMAILS": ({}, {"primaryEmail": "zoe@nordlys.dk", "additionalEmails": ["z@o.dk"]}),
    "PHONES": (
        {},
        {
            "primaryPhoneNumber": "612345678",
            "primaryPhoneCountryCode": "FR",
            "primaryPhoneCallingCode": "+33",
            "additionalPhones": None,
        },
    ),
    "LINKS": (
        {},
        {
            "primaryLinkUrl": "https://nordlys.dk",
            "primaryLinkLabel": "Site",
            "secondaryLinks": None,
        },
    ),
    "FULL_NAME": ({}, {"firstName": "Zoë", "lastName": "Ørsted"}),
    "ADDRESS": (
        {},
        {
            "addressStreet1": "1 rue de la Paix",
            "addressStreet2": None,
            "addressCity": "Paris",
            "addressPostcode": "75002",
            "addressState": None,
            "addressCountry": "France",
            "addressLat": None,
            "addressLng": None,
        },
    ),
    "CURRENCY": ({}, {"amountMicros": 1500000, "currencyCode": "EUR"}),
    "RICH_TEXT_V2": ({}, {"markdown": "**Bold** and *italic*", "blocknote": None}),
}


async def test_every_field_type_round_trips_through_an_export(tmp_path: Path) -> None:
    """One record with a field of every writable type: exported to Parquet, imported into
    an empty workspace with the codecs' own reimport specs, read back equal."""
    boxes = [Sandbox(tmp_path / f"{n}.sqlite", SandboxOptions(throttle=False)) for n in "ab"]
    try:
        for box in boxes:
            created = box.engine.create_object(
                {
                    "nameSingular": "sample",
                    "namePlural": "samples",
                    "labelSingular": "Sample",
                    "labelPlural": "Samples",
                }
            )
            for kind, (extra, _) in EVERY_TYPE.items():
                name = "f" + kind.title().replace("_", "")
                box.engine.create_field(
                    {
                        "objectMetadataId": created["id"],
                        "name": name,
                        "label": name,
                        "type": kind,
                        **extra,
                    }
                )
            box.engine.reload_metadata()
        values = {"f" + k.title().replace("_", ""): v for k, (_, v) in EVERY_TYPE.items()}
        async with client_for(boxes[0]) as client:
            from pipeline.twenty import ObjectNames

            await client.upsert_many(ObjectNames("sample", "samples"), [{"name": "one", **values}])
            schema = await load_schema(client)
            output = tmp_path / "samples.parquet"
            fields = ("id", "name", *values)
            await export_object(
                client,
                schema,
                "sample",
                output,
                state_dir=tmp_path / "s",
                options=ExportOptions(fields=fields),
            )
        obj = schema.object("sample")
        assert obj is not None
        specs: dict[str, Any] = {}
        for name in fields:
            item = obj.field(name)
            assert item is not None
            specs.update(codec_for(item.type).reimport(name))
        mapping = tmp_path / "back.yaml"
        mapping.write_text(
            json.dumps({"version": 1, "object": "sample", "key": ["id"], "fields": specs})
        )
        async with client_for(boxes[1]) as client:
            report = await import_file(
                load_mapping(mapping), client, state_dir=tmp_path / "t", source=output
            )
        assert report.created == 1 and report.rejected == 0, report.rejected
        original, copied = (
            box.engine.find_many(box.engine.object("sample"), limit=5).records[0] for box in boxes
        )
        assert all(original[n] not in (None, "", [], {}) for n in values)  # all stored
        assert original["fText"] == "Zoë Ørsted, naïve café"
        assert original["fMultiSelect"] == ["EU", "US"]
        assert original["fCurrency"]["amountMicros"] == 1500000
        differ = {n: (original[n], copied[n]) for n in fields if original[n] != copied[n]}
        assert differ == {}
    finally:
        for box in boxes:
            box.close()
