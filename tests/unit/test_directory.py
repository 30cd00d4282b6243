"""The partnership directory: loading with located errors, line management, cover and roles.

Uses the example partnership (examples/directory.yaml) and small fictional files in tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.directory import (
    Agency,
    Directory,
    Person,
    check_roles,
    load_directory,
    parse_directory,
    people_from_csv,
    role_label,
)
from bot.policy import load_preset
from bot.yamlsource import ConfigError, Problem, load_yaml_file, load_yaml_text

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "directory.yaml"


@pytest.fixture(scope="module")
def directory() -> Directory:
    return load_directory(EXAMPLE)


def ids(people: list[Person]) -> list[str]:
    return [p.id for p in people]


def problems_of(tmp_path: Path, text: str) -> list[Problem]:
    """The problems loading `text` as a directory file reports (it must fail)."""
    path = tmp_path / "directory.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_directory(path)
    return caught.value.problems


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the only line of `text` containing `needle`."""
    found = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(found) == 1, f"{needle!r} is on lines {found}"
    return found[0]


TWO_AGENCIES = """\
agencies:
  - {id: north-council, name: North Council, kind: council}
  - {id: river-nhs, name: River NHS Trust, kind: nhs}
"""


# --- loading the example -----------------------------------------------------------------


def test_the_example_directory_loads_every_agency_and_person(directory: Directory) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert len(directory.agencies) == text.count("kind: ")
    # Every entry of the file is an agency or a person, each written as one {id: ...} mapping.
    assert len(directory.agencies) + len(directory.people) == text.count("{id: ")
    assert directory.agency("wst").kind == "partnership"
    assert {p.agency for p in directory} <= set(directory.agencies)


def test_the_example_directory_reads_roles_titles_and_line_management(
    directory: Directory,
) -> None:
    amara = directory.person("amara.okafor")
    assert amara.name == "Amara Okafor"
    assert amara.title == "Social Worker"
    assert amara.roles == ("practitioner",)
    assert amara.manager == "tom.hadley"
    assert directory.person("tom.hadley").deputy == "hannah.price"
    assert directory.person("olivia.brandt").has_role("designated_safeguarding_lead")
    assert not directory.person("olivia.brandt").has_role("admin")


def test_person_lookups_say_unknown_plainly(directory: Directory) -> None:
    assert directory.get("nobody.here") is None
    assert directory.get(None) is None
    with pytest.raises(KeyError):
        directory.person("nobody.here")
    with pytest.raises(KeyError):
        directory.agency("no-such-agency")
    assert directory.agency_name("rwt") == "Royal Wolverhampton NHS Trust"
    assert directory.agency_name("no-such-agency") == "no-such-agency"


def test_a_minimal_file_defaults_roles_to_practitioner_and_lowercases_email(
    tmp_path: Path,
) -> None:
    path = tmp_path / "directory.yaml"
    path.write_text(
        TWO_AGENCIES
        + "people:\n"
        + "  - {id: ada.quill, name: Ada Quill, agency: river-nhs, email: Ada.Quill@Example.ORG,\n"
        + "     roles: line_manager}\n",
        encoding="utf-8",
    )
    loaded = load_directory(path)
    ada = loaded.person("ada.quill")
    assert ada.roles == ("line_manager",)
    assert ada.email == "ada.quill@example.org"
    assert loaded.by_email("ADA.QUILL@example.org") == ada


def test_role_labels_are_plain_english() -> None:
    assert role_label("senior_liaison_officer") == "Senior Liaison Officer"
    assert role_label("on_call") == "on-call manager"
    assert role_label("sacg_chair") == "sacg chair"


# --- parse errors, each at its file, line and field ----------------------------------------


def test_a_duplicate_agency_id_is_reported_at_the_second_one(tmp_path: Path) -> None:
    text = TWO_AGENCIES + "  - {id: river-nhs, name: River NHS Again}\n"
    problems = problems_of(tmp_path, text)
    assert [(p.line, p.field) for p in problems] == [
        (line_of(text, "River NHS Again"), "agencies[2].id")
    ]
    assert "duplicate agency id 'river-nhs'" in problems[0].message
    assert problems[0].file == str(tmp_path / "directory.yaml")


def test_a_duplicate_person_id_is_reported_at_the_second_one(tmp_path: Path) -> None:
    text = (
        TWO_AGENCIES
        + "people:\n"
        + "  - {id: ada.quill, name: Ada Quill, agency: river-nhs}\n"
        + "  - {id: ada.quill, name: Ada Quill Two, agency: north-council}\n"
    )
    problems = problems_of(tmp_path, text)
    assert [(p.line, p.field) for p in problems] == [
        (line_of(text, "Ada Quill Two"), "people[1].id")
    ]
    assert "duplicate person id 'ada.quill'" in problems[0].message


def test_an_unknown_agency_is_reported_at_the_persons_agency_field(tmp_path: Path) -> None:
    text = (
        TWO_AGENCIES
        + "people:\n"
        + "  - id: ada.quill\n"
        + "    name: Ada Quill\n"
        + "    agency: lake-police\n"
    )
    problems = problems_of(tmp_path, text)
    assert [(p.line, p.field) for p in problems] == [
        (line_of(text, "agency: lake-police"), "people[0].agency")
    ]
    assert "no agency with id 'lake-police'" in problems[0].message


@pytest.mark.parametrize("key", ["manager", "deputy"])
def test_an_unknown_manager_or_deputy_is_reported_at_that_field(tmp_path: Path, key: str) -> None:
    text = (
        TWO_AGENCIES
        + "people:\n"
        + "  - id: ada.quill\n"
        + "    name: Ada Quill\n"
        + "    agency: river-nhs\n"
        + f"    {key}: ghost.person\n"
    )
    problems = problems_of(tmp_path, text)
    assert [(p.line, p.field) for p in problems] == [
        (line_of(text, "ghost.person"), f"people[0].{key}")
    ]
    assert "no person with id 'ghost.person'" in problems[0].message


def test_being_your_own_manager_is_reported_once(tmp_path: Path) -> None:
    text = (
        TWO_AGENCIES
        + "people:\n  - {id: ada.quill, name: Ada Quill, agency: river-nhs, manager: ada.quill}\n"
    )
    problems = problems_of(tmp_path, text)
    assert [(p.line, p.field, p.message) for p in problems] == [
        (line_of(text, "ada.quill"), "people[0].manager", "a person cannot be their own manager")
    ]


def test_a_management_circle_is_reported_once_at_its_first_member(tmp_path: Path) -> None:
    # bo.lark and cy.moss manage each other; ada.quill and di.nash only report into the circle.
    text = (
        TWO_AGENCIES
        + "people:\n"
        + "  - {id: ada.quill, name: Ada Quill, agency: river-nhs, manager: bo.lark}\n"
        + "  - {id: bo.lark, name: Bo Lark, agency: river-nhs, manager: cy.moss}\n"
        + "  - {id: di.nash, name: Di Nash, agency: river-nhs, manager: cy.moss}\n"
        + "  - {id: cy.moss, name: Cy Moss, agency: river-nhs, manager: bo.lark}\n"
    )
    problems = problems_of(tmp_path, text)
    assert [(p.line, p.field) for p in problems] == [
        (line_of(text, "id: bo.lark"), "people[1].manager")
    ]
    assert problems[0].message == (
        "line management goes round in a circle: bo.lark -> cy.moss -> bo.lark"
    )


def test_two_separate_circles_are_both_reported(tmp_path: Path) -> None:
    text = (
        TWO_AGENCIES
        + "people:\n"
        + "  - {id: ada.quill, name: Ada Quill, agency: river-nhs, manager: bo.lark}\n"
        + "  - {id: bo.lark, name: Bo Lark, agency: river-nhs, manager: ada.quill}\n"
        + "  - {id: cy.moss, name: Cy Moss, agency: north-council, manager: di.nash}\n"
        + "  - {id: di.nash, name: Di Nash, agency: north-council, manager: ev.ford}\n"
        + "  - {id: ev.ford, name: Ev Ford, agency: north-council, manager: cy.moss}\n"
    )
    problems = problems_of(tmp_path, text)
    assert [(p.line, p.message.split(": ")[1]) for p in problems] == [
        (line_of(text, "id: ada.quill"), "ada.quill -> bo.lark -> ada.quill"),
        (line_of(text, "id: cy.moss"), "cy.moss -> di.nash -> ev.ford -> cy.moss"),
    ]


@pytest.mark.parametrize(
    ("key", "first", "second"),
    [
        ("email", "ada@example.org", "ADA@example.org"),
        ("slack_id", "U0ADA1", "U0ADA1"),
        ("teams_id", "aad-0001", "aad-0001"),
    ],
)
def test_an_identity_used_by_two_people_is_reported_at_the_second(
    tmp_path: Path, key: str, first: str, second: str
) -> None:
    text = (
        TWO_AGENCIES
        + "people:\n"
        + f"  - {{id: ada.quill, name: Ada Quill, agency: river-nhs, {key}: {first}}}\n"
        + f"  - {{id: bo.lark, name: Bo Lark, agency: river-nhs, {key}: {second}}}\n"
    )
    problems = problems_of(tmp_path, text)
    assert [(p.line, p.field) for p in problems] == [(line_of(text, "bo.lark"), f"people[1].{key}")]
    assert "is used twice" in problems[0].message


def test_every_broken_reference_is_reported_together(tmp_path: Path) -> None:
    text = (
        TWO_AGENCIES
        + "people:\n"
        + "  - {id: ada.quill, name: Ada Quill, agency: lake-police}\n"
        + "  - {id: bo.lark, name: Bo Lark, agency: river-nhs, manager: ghost.person}\n"
        + "  - {id: cy.moss, name: Cy Moss, agency: river-nhs, deputy: ghost.deputy}\n"
    )
    problems = problems_of(tmp_path, text)
    assert [(p.line, p.field) for p in problems] == [
        (line_of(text, "ada.quill"), "people[0].agency"),
        (line_of(text, "bo.lark"), "people[1].manager"),
        (line_of(text, "cy.moss"), "people[2].deputy"),
    ]


def test_field_validation_errors_carry_their_line(tmp_path: Path) -> None:
    text = (
        TWO_AGENCIES
        + "people:\n"
        + "  - id: ada.quill\n"
        + "    name: Ada Quill\n"
        + "    agency: river-nhs\n"
        + "    email: not-an-address\n"
        + "    favourite_colour: blue\n"
    )
    problems = problems_of(tmp_path, text)
    by_field = {p.field: p for p in problems}
    assert by_field["people[0].email"].line == line_of(text, "not-an-address")
    assert "not an email address" in by_field["people[0].email"].message
    assert by_field["people[0].favourite_colour"].line == line_of(text, "favourite_colour")
    assert "unknown field" in by_field["people[0].favourite_colour"].message
    assert str(by_field["people[0].email"]).startswith(
        f"{tmp_path / 'directory.yaml'}:{line_of(text, 'not-an-address')}: people[0].email: "
    )


def test_a_file_without_agencies_is_refused(tmp_path: Path) -> None:
    assert [p.message for p in problems_of(tmp_path, "- just a list\n")] == [
        "a directory file needs 'agencies:' and 'people:'"
    ]
    problems = problems_of(tmp_path, "agencies: []\n")
    assert [(p.line, p.field) for p in problems] == [(1, "agencies")]


def test_parse_directory_takes_already_parsed_yaml() -> None:
    located = load_yaml_text(
        TWO_AGENCIES + "people:\n  - {id: ada.quill, name: Ada Quill, agency: nowhere}\n",
        "inline.yaml",
    )
    with pytest.raises(ConfigError) as caught:
        parse_directory(located)
    assert str(caught.value) == "inline.yaml:5: people[0].agency: no agency with id 'nowhere'"


# --- line management, cover and roles -----------------------------------------------------


def test_chain_lists_managers_nearest_first(directory: Directory) -> None:
    assert ids(directory.chain("amara.okafor")) == ["tom.hadley", "grace.mensah", "olivia.brandt"]
    assert ids(directory.chain("ben.carter")) == ["rosa.delgado", "imran.shah", "judith.moore"]
    assert directory.chain("olivia.brandt") == []
    assert directory.chain("nobody.here") == []


def test_chain_stops_at_a_circle_instead_of_looping() -> None:
    # The file loader refuses circles; a Directory built in code must still not hang.
    agency = Agency(id="river-nhs", name="River NHS Trust")
    people = [
        Person(id="ada.quill", name="Ada Quill", agency="river-nhs", manager="bo.lark"),
        Person(id="bo.lark", name="Bo Lark", agency="river-nhs", manager="cy.moss"),
        Person(id="cy.moss", name="Cy Moss", agency="river-nhs", manager="bo.lark"),
    ]
    looped = Directory([agency], people)
    assert ids(looped.chain("ada.quill")) == ["bo.lark", "cy.moss"]
    assert ids(looped.chain("bo.lark")) == ["cy.moss"]


def test_chain_stops_at_a_manager_missing_from_the_directory() -> None:
    agency = Agency(id="river-nhs", name="River NHS Trust")
    people = [
        Person(id="ada.quill", name="Ada Quill", agency="river-nhs", manager="bo.lark"),
        Person(id="bo.lark", name="Bo Lark", agency="river-nhs", manager="left.already"),
    ]
    assert ids(Directory([agency], people).chain("ada.quill")) == ["bo.lark"]


def away(directory: Directory, *person_ids: str) -> Directory:
    """The directory with these people marked away."""
    return directory.with_people(
        directory.person(i).model_copy(update={"away": True}) for i in person_ids
    )


def test_a_person_who_is_away_is_covered_by_their_deputy(directory: Directory) -> None:
    tom = directory.person("tom.hadley")
    assert directory.cover(tom) == tom
    with_tom_away = away(directory, "tom.hadley")
    assert with_tom_away.cover(with_tom_away.person("tom.hadley")).id == "hannah.price"


def test_cover_stays_with_the_person_when_their_deputy_is_away_too(directory: Directory) -> None:
    both_away = away(directory, "tom.hadley", "hannah.price")
    assert both_away.cover(both_away.person("tom.hadley")).id == "tom.hadley"


def test_cover_stays_with_someone_away_who_has_no_deputy(directory: Directory) -> None:
    rosa_away = away(directory, "rosa.delgado")
    assert rosa_away.cover(rosa_away.person("rosa.delgado")).id == "rosa.delgado"


def test_the_line_manager_is_the_first_in_the_persons_chain(directory: Directory) -> None:
    assert ids(
        directory.role_holders("cwc-childrens", "line_manager", for_person="amara.okafor")
    ) == ["tom.hadley"]
    assert ids(directory.role_holders("rwt", "line_manager", for_person="ben.carter")) == [
        "rosa.delgado"
    ]
    # Tom Hadley manages Hannah Price, but her line manager is him, not herself.
    assert ids(
        directory.role_holders("cwc-childrens", "line_manager", for_person="hannah.price")
    ) == ["tom.hadley"]


def test_a_line_manager_who_is_away_is_covered_by_their_deputy(directory: Directory) -> None:
    with_tom_away = away(directory, "tom.hadley")
    assert ids(
        with_tom_away.role_holders("cwc-childrens", "line_manager", for_person="amara.okafor")
    ) == ["hannah.price"]


def test_a_role_is_found_by_walking_up_the_persons_chain_first(directory: Directory) -> None:
    # Olivia Brandt is Amara Okafor's nearest manager who is a safeguarding lead.
    assert ids(
        directory.role_holders(
            "cwc-childrens", "designated_safeguarding_lead", for_person="amara.okafor"
        )
    ) == ["olivia.brandt"]
    # The chain decides between two senior managers of the same agency: Imran Shah, not Judith.
    assert ids(directory.role_holders("rwt", "senior_manager", for_person="ben.carter")) == [
        "imran.shah"
    ]
    assert ids(directory.role_holders("rwt", "senior_manager")) == ["imran.shah"]


def test_without_a_person_every_holder_in_the_agency_is_returned(directory: Directory) -> None:
    assert ids(directory.role_holders("rwt", "practitioner")) == ["ben.carter", "chloe.evans"]


def test_a_person_from_another_agency_does_not_steer_the_search(directory: Directory) -> None:
    # Amara Okafor is not at the Trust: her chain is no guide to who acts for it.
    assert ids(directory.role_holders("rwt", "line_manager", for_person="amara.okafor")) == [
        "rosa.delgado"
    ]
    assert ids(directory.role_holders("rwt", "practitioner", for_person="amara.okafor")) == [
        "ben.carter",
        "chloe.evans",
    ]


def test_the_practitioner_role_is_the_named_person(directory: Directory) -> None:
    assert ids(directory.role_holders("rwt", "practitioner", for_person="chloe.evans")) == [
        "chloe.evans"
    ]


def test_partnership_wide_roles_fall_back_to_the_partnership(directory: Directory) -> None:
    # The SACG Chair is held at Wolverhampton Safeguarding Together, for every member agency.
    assert ids(directory.role_holders("rwt", "sacg_chair", for_person="ben.carter")) == [
        "irene.falk"
    ]
    assert ids(directory.role_holders("wmp", "admin")) == ["helen.marsh", "george.ellis"]
    extended = directory.with_people(
        [
            Person(id="nell.ashby", name="Nell Ashby", agency="wst", roles=("board_chair",)),
            Person(
                id="pip.garner",
                name="Pip Garner",
                agency="wst",
                roles=("senior_liaison_officer",),
            ),
        ]
    )
    assert ids(extended.role_holders("probation", "board_chair")) == ["nell.ashby"]
    assert ids(extended.role_holders("bchft", "senior_liaison_officer")) == ["pip.garner"]


def test_an_agencys_own_role_holder_comes_before_the_partnership(directory: Directory) -> None:
    extended = directory.with_people(
        [
            Person(
                id="pip.garner",
                name="Pip Garner",
                agency="wst",
                roles=("senior_liaison_officer",),
            ),
            Person(
                id="quinn.hale",
                name="Quinn Hale",
                agency="rwt",
                roles=("senior_liaison_officer",),
            ),
        ]
    )
    assert ids(extended.role_holders("rwt", "senior_liaison_officer")) == ["quinn.hale"]
    assert ids(extended.role_holders("wmp", "senior_liaison_officer")) == ["pip.garner"]


def test_a_role_is_never_borrowed_from_another_member_agency(directory: Directory) -> None:
    # The police and the Trust have on-call managers; the Foundation Trust has none, and the
    # partnership holds no on-call role either, so nobody is returned.
    assert directory.role_holders("bchft", "on_call") == []
    assert ids(directory.role_holders("wmp", "on_call")) == ["mia.kowalski"]
    assert directory.role_holders("rwt", "board_chair") == []


def test_leads_are_each_agencys_designated_safeguarding_leads(directory: Directory) -> None:
    assert ids(directory.leads("cwc-childrens")) == ["olivia.brandt"]
    assert ids(directory.leads("cwc-adults")) == ["fatima.begum"]
    assert ids(directory.leads("rwt")) == ["imran.shah"]
    assert ids(directory.leads("oakfield-academy")) == ["owen.tate"]
    assert ids(directory.leads("wst")) == ["helen.marsh"]


def test_a_lead_who_is_away_is_covered_by_their_deputy(directory: Directory) -> None:
    extended = directory.with_people(
        [directory.person("imran.shah").model_copy(update={"away": True, "deputy": "judith.moore"})]
    )
    assert ids(extended.leads("rwt")) == ["judith.moore"]


def test_in_agency_and_holding_filter_by_agency_and_role(directory: Directory) -> None:
    assert ids(directory.in_agency("cwc-adults")) == ["declan.rowe", "fatima.begum", "martin.kell"]
    assert ids(directory.in_agency("cwc-adults", "line_manager")) == ["fatima.begum"]
    assert ids(directory.holding("admin")) == ["helen.marsh", "george.ellis"]


# --- platform identities --------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_identities(directory: Directory) -> Directory:
    return directory.with_people(
        [
            directory.person("amara.okafor").model_copy(update={"slack_id": "U01AMARA"}),
            directory.person("ben.carter").model_copy(
                update={"teams_id": "29:1f0e-ben-carter-aad"}
            ),
        ]
    )


def test_people_are_found_by_slack_id(with_identities: Directory) -> None:
    found = with_identities.by_slack("U01AMARA")
    assert found is not None and found.id == "amara.okafor"
    assert with_identities.by_slack("U0NOBODY") is None


def test_people_are_found_by_teams_id(with_identities: Directory) -> None:
    found = with_identities.by_teams("29:1f0e-ben-carter-aad")
    assert found is not None and found.id == "ben.carter"
    assert with_identities.by_teams("29:someone-else") is None
    assert with_identities.by_slack("29:1f0e-ben-carter-aad") is None


def test_people_are_found_by_email_whatever_its_case(directory: Directory) -> None:
    found = directory.by_email("Rosa.Delgado@EXAMPLE.org")
    assert found is not None and found.id == "rosa.delgado"
    assert directory.by_email("rosa.delgado@elsewhere.org") is None


def test_with_people_adds_and_replaces_without_changing_the_original(
    directory: Directory,
) -> None:
    newcomer = Person(
        id="tess.wren", name="Tess Wren", agency="rwt", manager="rosa.delgado", slack_id="U0TESS"
    )
    moved = directory.person("chloe.evans").model_copy(update={"email": "c.evans@example.org"})
    extended = directory.with_people([newcomer, moved])
    assert extended.by_slack("U0TESS") == newcomer
    assert ids(extended.chain("tess.wren")) == ["rosa.delgado", "imran.shah", "judith.moore"]
    assert extended.by_email("c.evans@example.org") == moved
    assert extended.by_email("chloe.evans@example.org") is None
    assert directory.get("tess.wren") is None
    assert directory.by_email("chloe.evans@example.org") is not None


# --- importing an HR export -----------------------------------------------------------------


def test_csv_rows_become_directory_entries() -> None:
    text = (
        "id,name,agency,title,roles,manager,email\n"
        "tess.wren,Tess Wren,rwt,Health Visitor,practitioner,rosa.delgado,tess.wren@example.org\n"
        "uma.lowe,Uma Lowe,rwt,Team Leader, line_manager ; designated_safeguarding_lead ,,\n"
    )
    assert people_from_csv(text) == [
        {
            "id": "tess.wren",
            "name": "Tess Wren",
            "agency": "rwt",
            "title": "Health Visitor",
            "roles": ["practitioner"],
            "manager": "rosa.delgado",
            "email": "tess.wren@example.org",
        },
        {
            "id": "uma.lowe",
            "name": "Uma Lowe",
            "agency": "rwt",
            "title": "Team Leader",
            "roles": ["line_manager", "designated_safeguarding_lead"],
        },
    ]


def test_imported_rows_validate_as_a_directory(directory: Directory) -> None:
    rows = people_from_csv("ID, Name ,AGENCY,manager\ntess.wren,Tess Wren,rwt,rosa.delgado\n,,,\n")
    located = load_yaml_file(EXAMPLE)
    located.data["people"] += rows
    merged = parse_directory(located)
    assert ids(merged.chain("tess.wren")) == ["rosa.delgado", "imran.shah", "judith.moore"]
    assert merged.person("tess.wren").roles == ("practitioner",)


def test_a_bad_csv_row_is_reported_at_its_line_and_column() -> None:
    text = (
        "id,name,agency,email,slack_id\n"
        "tess.wren,Tess Wren,rwt,tess.wren@example.org,\n"
        "uma.lowe,Uma Lowe,rwt,uma-at-example.org,u-lowercase\n"
    )
    with pytest.raises(ConfigError) as caught:
        people_from_csv(text, file="hr-export.csv")
    problems = caught.value.problems
    assert [(p.file, p.line, p.field) for p in problems] == [
        ("hr-export.csv", 3, "email"),
        ("hr-export.csv", 3, "slack_id"),
    ]
    assert problems[0].message == "'uma-at-example.org' is not an email address"
    assert "u-lowercase" in problems[1].message


def test_a_csv_row_without_an_id_is_reported_not_imported() -> None:
    text = "id,name,agency\ntess.wren,Tess Wren,rwt\n,Uma Lowe,rwt\n"
    with pytest.raises(ConfigError) as caught:
        people_from_csv(text)
    assert [str(p) for p in caught.value.problems] == ["people.csv:3: id: this row has no id"]


def test_a_csv_id_repeated_on_two_rows_is_reported() -> None:
    text = "id,name,agency\ntess.wren,Tess Wren,rwt\numa.lowe,Uma Lowe,rwt\ntess.wren,Tess W,rwt\n"
    with pytest.raises(ConfigError) as caught:
        people_from_csv(text)
    assert [str(p) for p in caught.value.problems] == [
        "people.csv:4: id: 'tess.wren' is also on line 2"
    ]


def test_a_csv_row_with_more_cells_than_headers_is_reported_at_its_line() -> None:
    text = "id,name,agency\ntess.wren,Tess Wren,rwt\numa.lowe,Uma Lowe,rwt,surplus\n"
    with pytest.raises(ConfigError) as caught:
        people_from_csv(text)
    assert [(p.line, p.message) for p in caught.value.problems] == [
        (3, "this row has more cells than headers")
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("id,name\ntess.wren,Tess Wren\n", "missing column(s): agency"),
        ("name,agency\nTess Wren,rwt\n", "missing column(s): id"),
    ],
)
def test_a_csv_without_the_needed_columns_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        people_from_csv(text)
    assert [(p.line, p.message) for p in caught.value.problems] == [(1, message)]


def test_an_unknown_csv_column_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        people_from_csv("id,name,agency,shoe_size\ntess.wren,Tess Wren,rwt,5\n")
    assert caught.value.problems[0].message.startswith("unknown column(s): shoe_size; expected id,")


# --- roles a policy calls on ----------------------------------------------------------------


def test_check_roles_names_each_role_nobody_holds_at_the_people_line(
    directory: Directory,
) -> None:
    located = load_yaml_file(EXAMPLE)
    text = EXAMPLE.read_text(encoding="utf-8")
    problems = check_roles(
        directory, load_preset("barnet").roles(), where=located, file="directory.yaml"
    )
    # The example is Wolverhampton's: Barnet's management ladder and board roles are not in it.
    missing = [
        "board_manager",
        "deputy_team_manager",
        "head_of_safeguarding",
        "head_of_service",
        "team_manager",
    ]
    assert not any(role in text for role in missing)
    assert [p.message for p in problems] == [
        f"nobody holds the role '{role}', which the policy calls on" for role in missing
    ]
    assert {(p.file, p.line, p.field) for p in problems} == {
        ("directory.yaml", line_of(text, "people:"), "people")
    }


def test_check_roles_passes_the_policy_the_directory_was_written_for(
    directory: Directory,
) -> None:
    wolverhampton = load_preset("wolverhampton")
    assert check_roles(directory, wolverhampton.roles(), where=None, file="d.yaml") == []


def test_check_roles_never_asks_for_practitioners_or_line_managers() -> None:
    # Both come from the dispute itself and from line management, not from a role list.
    empty = Directory([Agency(id="river-nhs", name="River NHS Trust")], [])
    problems = check_roles(
        empty, ["practitioner", "line_manager", "panel_chair"], where=None, file="d.yaml"
    )
    assert [(p.line, p.message) for p in problems] == [
        (None, "nobody holds the role 'panel_chair', which the policy calls on")
    ]


@pytest.mark.parametrize(
    ("name", "unheld"),
    [
        ("lincolnshire", ["independent_chair", "senior_liaison_officer"]),
        ("worcestershire", ["senior_liaison_officer"]),
    ],
)
def test_check_roles_reports_the_slos_and_chairs_the_example_lacks(
    directory: Directory, name: str, unheld: list[str]
) -> None:
    problems = check_roles(directory, load_preset(name).roles(), where=None, file="d.yaml")
    assert [p.message.split("'")[1] for p in problems] == unheld
    slo = Person(id="pip.garner", name="Pip Garner", agency="wst", roles=tuple(unheld))
    assert (
        check_roles(
            directory.with_people([slo]), load_preset(name).roles(), where=None, file="d.yaml"
        )
        == []
    )
