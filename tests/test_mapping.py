"""Mapping files: parsing, every problem at once with its line, checks against the workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import MappingError
from pipeline.mapping import load_mapping
from pipeline.mapping_check import check_mapping, key_is_unique, key_paths
from pipeline.standard import standard_schema

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = standard_schema()


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["companies", "people", "opportunities"])
def test_sample_mappings_load_and_check(name: str) -> None:
    mapping = load_mapping(ROOT / "mappings" / f"{name}.yaml")
    obj = check_mapping(mapping, SCHEMA)
    assert obj.name_singular == mapping.object
    assert mapping.source.path is not None and mapping.source.path.exists()


def test_short_and_long_forms(tmp_path: Path) -> None:
    mapping = load_mapping(
        write(
            tmp_path,
            """
version: 1
object: person
source: {path: data.csv, delimiter: ";", null_values: ["", "N/A"]}
key: emails.primaryEmail
fields:
  jobTitle: title
  name.lastName: {column: last, transform: [strip, title, {replace: ["Mc ", "Mc"]}]}
  city: {value: Paris}
  name.firstName: {template: "{first} {middle}"}
""",
        )
    )
    assert mapping.key == ("emails.primaryEmail",)
    assert mapping.source.path == tmp_path / "data.csv"
    assert mapping.source.null_values == ("", "N/A")
    specs = {s.target: s for s in mapping.fields}
    assert specs["jobTitle"].column == "title"
    assert [t.name for t in specs["name.lastName"].transforms] == ["strip", "title", "replace"]
    assert specs["city"].value == "Paris"
    assert specs["name.firstName"].columns == ["first", "middle"]
    assert mapping.source_columns == ["title", "last", "first", "middle"]


def test_every_problem_at_once_with_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """version: 2
object: person
colour: blue
on_duplicate_key: newest
fields:
  jobTitle: {column: t, transform: [shout]}
  city: {column: c, value: x}
  phones: {column: p, default_country: France}
  amount: {column: a, currency: euros}
  stage: {column: s, values: [a, b]}
""",
    )
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    assert info.value.problems == [
        f"{path}:3: unknown key 'colour' (expected one of: fields, key, object, "
        "on_duplicate_key, on_invalid, source, timezone, version, where)",
        f"{path}:1: version 2 is not supported; write version: 1",
        f"{path}:4: on_duplicate_key 'newest' must be last, first or reject",
        f"{path}:6: field 'jobTitle': unknown transform 'shout' (use strip, lower, upper, "
        "title, replace, regex)",
        f"{path}:7: field 'city': needs exactly one of column, value or template",
        f"{path}:8: field 'phones': default_country is a 2-letter ISO code, e.g. US",
        f"{path}:9: field 'amount': currency must be a 3-letter ISO code, e.g. EUR",
        f"{path}:10: field 'stage': values maps source labels to option values, "
        'e.g. values: {"Closed won": CUSTOMER}',
    ]
    assert info.value.exit_code == 2


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "object: person\nfields:\n  city: [unclosed\n")
    with pytest.raises(MappingError, match=rf"{path}:\d+: not valid YAML"):
        load_mapping(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="no such mapping file"):
        load_mapping(tmp_path / "nope.yaml")


def test_workspace_checks_report_everything(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """object: person
key: [emails.primaryEmail]
fields:
  emails.primaryEmal: email
  name.middleName: middle
  jobTitel: title
  searchVector: x
  company: {column: company, lookup: name}
  city: {column: town, lookup: name}
  phones: {column: phone}
""",
    )
    mapping = load_mapping(path)
    with pytest.raises(MappingError) as info:
        check_mapping(
            mapping,
            SCHEMA,
            columns=["email", "middle", "title", "x", "company", "town", "phone_number"],
        )
    problems = info.value.problems
    assert f"{path}:4: field 'emails.primaryEmal': EMAILS has no sub-field" not in problems
    assert problems[0] == (
        f"{path}:4: field 'emails.primaryEmal': emails (EMAILS) has no "
        "sub-field 'primaryEmal'; its sub-fields are primaryEmail, "
        "additionalEmails"
    )
    assert problems[1].startswith(f"{path}:5: field 'name.middleName': name (FULL_NAME) has no")
    assert (
        problems[2]
        == f"{path}:6: field 'jobTitel': no such field on person (did you mean jobTitle?)"
    )
    assert problems[3] == (
        f"{path}:7: field 'searchVector': searchVector (TS_VECTOR) cannot be written by an import"
    )
    assert problems[4] == (
        f"{path}:8: field 'company': lookup 'name' is not a unique field of "
        "company (unique: id, domainName.primaryLinkUrl)"
    )
    assert problems[5] == f"{path}:9: field 'city': lookup only applies to relation fields"
    assert problems[6] == (
        f"{path}:10: field 'phones': the source has no column 'phone' "
        "(did you mean 'phone_number'?)"
    )
    assert problems[7] == f"{path}:2: key 'emails.primaryEmail' is not mapped in fields"


def test_unknown_object_suggests(tmp_path: Path) -> None:
    mapping = load_mapping(write(tmp_path, "object: persn\nfields: {city: c}\n"))
    with pytest.raises(MappingError, match=r"no object 'persn' .*did you mean person\?"):
        check_mapping(mapping, SCHEMA)


def test_select_values_must_be_options(tmp_path: Path) -> None:
    mapping = load_mapping(
        write(
            tmp_path,
            """object: opportunity
key: [name]
fields:
  name: deal
  stage: {column: s, values: {"Won": CUSTOMR, "New": NEW}}
""",
        )
    )
    with pytest.raises(MappingError) as info:
        check_mapping(mapping, SCHEMA)
    assert "values: 'Won' -> 'CUSTOMR' is not an option of stage" in str(info.value)
    assert "did you mean CUSTOMER?" in str(info.value)


def test_key_required_when_nothing_unique_is_mapped(tmp_path: Path) -> None:
    mapping = load_mapping(write(tmp_path, "object: note\nfields: {title: t}\n"))
    with pytest.raises(MappingError, match=r"no key: declare one, e\.g\. key: \[name\]"):
        check_mapping(mapping, SCHEMA)


def test_key_derivation(tmp_path: Path) -> None:
    people = load_mapping(write(tmp_path, "object: person\nfields: {emails: e}\n", "p.yaml"))
    obj = check_mapping(people, SCHEMA)
    assert key_paths(people, obj) == ("emails.primaryEmail",)
    assert key_is_unique(key_paths(people, obj), obj)
    notes = load_mapping(
        write(tmp_path, "object: note\nkey: [title]\nfields: {title: t}\n", "n.yaml")
    )
    obj = check_mapping(notes, SCHEMA)
    assert key_paths(notes, obj) == ("title",)
    assert not key_is_unique(("title",), obj)
