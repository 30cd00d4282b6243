"""The partnership directory: agencies, people, roles, line management, deputies, identities.

Pure domain: standard library, pydantic and the YAML loader only. Who holds a role for an
agency is answered here, so no recipient is ever hard-coded elsewhere.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.yamlsource import ConfigError, Located, Problem, load_yaml_file, problems_from_validation

# The roles every partnership has; a policy may name more (director, sacg_chair...).
KNOWN_ROLES = (
    "practitioner",
    "line_manager",
    "designated_safeguarding_lead",
    "senior_manager",
    "senior_liaison_officer",
    "partnership_representative",
    "board_chair",
    "panel_chair",
    "on_call",
    "admin",
)

ROLE_LABELS = {
    "practitioner": "practitioner",
    "line_manager": "line manager",
    "designated_safeguarding_lead": "designated safeguarding lead",
    "senior_manager": "senior manager",
    "senior_liaison_officer": "Senior Liaison Officer",
    "partnership_representative": "partnership representative",
    "on_call": "on-call manager",
}

Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)]


def role_label(role: str) -> str:
    """Plain English for a role id."""
    return ROLE_LABELS.get(role, role.replace("_", " "))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Agency(_Frozen):
    """A member organisation of the partnership."""

    id: Id
    name: str = Field(min_length=2, max_length=120)
    kind: Literal[
        "council", "nhs", "police", "school", "probation", "partnership", "voluntary", "other"
    ] = "other"
    on_call: str | None = Field(default=None, max_length=300)


class Person(_Frozen):
    """Someone who may raise, receive, manage or oversee a dispute."""

    id: Id
    name: str = Field(min_length=2, max_length=120)
    agency: Id
    title: str | None = Field(default=None, max_length=120)
    roles: tuple[str, ...] = ("practitioner",)
    manager: Id | None = None
    deputy: Id | None = None
    away: bool = False
    email: str | None = Field(default=None, max_length=254)
    slack_id: str | None = Field(default=None, pattern=r"^[UW][A-Z0-9]{2,20}$")
    teams_id: str | None = Field(default=None, max_length=100)

    @field_validator("roles", mode="before")
    @classmethod
    def _roles(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        return tuple(value) if isinstance(value, list) else value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and ("@" not in value or value.startswith("@") or " " in value):
            raise ValueError(f"'{value}' is not an email address")
        return value.lower() if value else value

    def has_role(self, role: str) -> bool:
        """Whether this person holds `role`."""
        return role in self.roles


class DirectoryFile(_Frozen):
    """The directory file's shape."""

    agencies: list[Agency] = Field(min_length=1)
    people: list[Person] = Field(default_factory=list)


class Directory:
    """Agencies and people, with the queries the service needs."""

    def __init__(self, agencies: Iterable[Agency], people: Iterable[Person]) -> None:
        self.agencies: dict[str, Agency] = {a.id: a for a in agencies}
        self.people: dict[str, Person] = {p.id: p for p in people}
        self._by_slack = {p.slack_id: p for p in self.people.values() if p.slack_id}
        self._by_teams = {p.teams_id: p for p in self.people.values() if p.teams_id}
        self._by_email = {p.email: p for p in self.people.values() if p.email}

    def __iter__(self) -> Iterator[Person]:
        return iter(self.people.values())

    def person(self, person_id: str) -> Person:
        """The person with this id (KeyError if unknown)."""
        return self.people[person_id]

    def get(self, person_id: str | None) -> Person | None:
        """The person with this id, or None."""
        return self.people.get(person_id) if person_id else None

    def agency(self, agency_id: str) -> Agency:
        """The agency with this id (KeyError if unknown)."""
        return self.agencies[agency_id]

    def agency_name(self, agency_id: str) -> str:
        """An agency's name, or its id if unknown."""
        agency = self.agencies.get(agency_id)
        return agency.name if agency else agency_id

    def by_slack(self, slack_id: str) -> Person | None:
        """The person with this Slack user id."""
        return self._by_slack.get(slack_id)

    def by_teams(self, teams_id: str) -> Person | None:
        """The person with this Teams (AAD object) id."""
        return self._by_teams.get(teams_id)

    def by_email(self, email: str) -> Person | None:
        """The person with this email address."""
        return self._by_email.get(email.lower())

    def with_people(self, extra: Iterable[Person]) -> Directory:
        """A copy with people added or replaced (people remembered from chat)."""
        people = dict(self.people)
        people.update({p.id: p for p in extra})
        return Directory(self.agencies.values(), people.values())

    def in_agency(self, agency_id: str, role: str | None = None) -> list[Person]:
        """People of an agency, optionally only those holding `role`."""
        return [
            p
            for p in self.people.values()
            if p.agency == agency_id and (role is None or p.has_role(role))
        ]

    def holding(self, role: str) -> list[Person]:
        """Everyone in the partnership holding `role`."""
        return [p for p in self.people.values() if p.has_role(role)]

    def chain(self, person_id: str) -> list[Person]:
        """The person's managers, nearest first (stops at a cycle rather than looping)."""
        out: list[Person] = []
        seen = {person_id}
        current = self.people.get(person_id)
        while current is not None and current.manager and current.manager not in seen:
            seen.add(current.manager)
            manager = self.people.get(current.manager)
            if manager is None:
                break
            out.append(manager)
            current = manager
        return out

    def cover(self, person: Person) -> Person:
        """Who acts for `person`: their deputy while they are away."""
        if person.away and person.deputy:
            deputy = self.people.get(person.deputy)
            if deputy is not None and not deputy.away:
                return deputy
        return person

    def role_holders(
        self, agency_id: str, role: str, *, for_person: str | None = None
    ) -> list[Person]:
        """Who acts in `role` for an agency, walking up `for_person`'s management chain first."""
        found: list[Person] = []
        anchor = self.people.get(for_person) if for_person else None
        if anchor is not None and anchor.agency == agency_id:
            if role == "practitioner":
                found = [anchor]
            else:
                chain = self.chain(anchor.id)
                if role == "line_manager" and chain:
                    found = [chain[0]]
                else:
                    found = [m for m in chain if m.has_role(role)][:1]
        if not found:
            found = self.in_agency(agency_id, role)
        if not found:
            # Partnership-wide roles (board manager, chairs, SLOs) are held by the partnership
            # itself, not by each member agency.
            for agency in self.agencies.values():
                if agency.kind == "partnership" and agency.id != agency_id:
                    found += self.in_agency(agency.id, role)
        covered: list[Person] = []
        for person in found:
            actor = self.cover(person)
            if actor not in covered:
                covered.append(actor)
        return covered

    def leads(self, agency_id: str) -> list[Person]:
        """The agency's designated safeguarding leads."""
        return self.role_holders(agency_id, "designated_safeguarding_lead")


def parse_directory(located: Located) -> Directory:
    """Validate parsed YAML as a directory; every broken reference is reported with its line."""
    if not isinstance(located.data, dict):
        raise ConfigError(
            [Problem(located.file, 1, "", "a directory file needs 'agencies:' and 'people:'")]
        )
    try:
        parsed = DirectoryFile.model_validate(located.data)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(located, exc)) from exc
    problems = check_references(parsed, located)
    if problems:
        raise ConfigError(problems)
    return Directory(parsed.agencies, parsed.people)


def check_references(parsed: DirectoryFile, located: Located) -> list[Problem]:
    """Duplicate ids, unknown agencies, managers and deputies, and management cycles."""
    problems: list[Problem] = []
    agency_ids: set[str] = set()
    for i, agency in enumerate(parsed.agencies):
        if agency.id in agency_ids:
            problems.append(
                located.problem(("agencies", i, "id"), f"duplicate agency id '{agency.id}'")
            )
        agency_ids.add(agency.id)
    person_ids: dict[str, int] = {}
    for i, person in enumerate(parsed.people):
        if person.id in person_ids:
            problems.append(
                located.problem(("people", i, "id"), f"duplicate person id '{person.id}'")
            )
        person_ids.setdefault(person.id, i)
    emails: dict[str, int] = {}
    slack_ids: dict[str, int] = {}
    teams_ids: dict[str, int] = {}
    for i, person in enumerate(parsed.people):
        if person.agency not in agency_ids:
            problems.append(
                located.problem(("people", i, "agency"), f"no agency with id '{person.agency}'")
            )
        for key in ("manager", "deputy"):
            ref = getattr(person, key)
            if ref is not None and ref not in person_ids:
                problems.append(located.problem(("people", i, key), f"no person with id '{ref}'"))
            elif ref == person.id:
                problems.append(
                    located.problem(("people", i, key), "a person cannot be their own " + key)
                )
        # A platform identity shared by two people would let one act as the other (lookups
        # keep only the last), so Slack and Teams ids must be unique like emails.
        for key, used in (("email", emails), ("slack_id", slack_ids), ("teams_id", teams_ids)):
            value = getattr(person, key)
            if value:
                if value in used:
                    problems.append(located.problem(("people", i, key), f"'{value}' is used twice"))
                used.setdefault(value, i)
    by_id = {p.id: p for p in parsed.people}
    # Each circle is reported once, at the manager line of its first member in the file: people
    # who merely report into a circle are not part of the mistake, and a person who is their
    # own manager is already reported above.
    reported: set[frozenset[str]] = set()
    for person in parsed.people:
        seen = [person.id]
        current = person
        while current.manager and current.manager in by_id:
            if current.manager in seen:
                circle = seen[seen.index(current.manager) :]
                if len(circle) > 1 and frozenset(circle) not in reported:
                    reported.add(frozenset(circle))
                    first = min(circle, key=person_ids.__getitem__)
                    at = circle.index(first)
                    loop = " -> ".join([*circle[at:], *circle[:at], first])
                    problems.append(
                        located.problem(
                            ("people", person_ids[first], "manager"),
                            f"line management goes round in a circle: {loop}",
                        )
                    )
                break
            seen.append(current.manager)
            current = by_id[current.manager]
    return problems


def check_roles(
    directory: Directory, roles: Iterable[str], *, where: Located | None, file: str
) -> list[Problem]:
    """Roles a policy calls on that nobody in the directory holds."""
    problems = []
    for role in sorted(set(roles)):
        if role in ("practitioner", "line_manager"):
            continue  # the dispute names the practitioner; managers come from line management
        if not directory.holding(role):
            line = where.line_of(("people",)) if where else None
            problems.append(
                Problem(
                    file,
                    line,
                    "people",
                    f"nobody holds the role '{role}', which the policy calls on",
                )
            )
    return problems


def load_directory(path: Path | str) -> Directory:
    """Load and validate a directory YAML file."""
    return parse_directory(load_yaml_file(path))


CSV_COLUMNS = (
    "id",
    "name",
    "agency",
    "title",
    "roles",
    "manager",
    "deputy",
    "email",
    "slack_id",
    "teams_id",
)


def people_from_csv(text: str, *, file: str = "people.csv") -> list[dict[str, Any]]:
    """Rows of an HR-style export as directory person entries (roles separated by ';')."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        raise ConfigError([Problem(file, 1, "", "the file is empty")])
    headers = [h.strip().lower() for h in reader.fieldnames]
    missing = [c for c in ("id", "name", "agency") if c not in headers]
    if missing:
        raise ConfigError([Problem(file, 1, "", f"missing column(s): {', '.join(missing)}")])
    unknown = [h for h in headers if h not in CSV_COLUMNS]
    if unknown:
        raise ConfigError(
            [
                Problem(
                    file,
                    1,
                    "",
                    f"unknown column(s): {', '.join(unknown)}; expected {', '.join(CSV_COLUMNS)}",
                )
            ]
        )
    out = []
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    for row in reader:
        entry: dict[str, Any] = {}
        for raw_key, value in row.items():
            if raw_key is None:
                raise ConfigError(
                    [Problem(file, reader.line_num, "", "this row has more cells than headers")]
                )
            key = raw_key.strip().lower()
            value = (value or "").strip()
            if not value:
                continue
            entry[key] = (
                [r.strip() for r in value.split(";") if r.strip()] if key == "roles" else value
            )
        if entry:
            problems += _row_problems(entry, file, reader.line_num, first_line)
            out.append(entry)
    if problems:
        raise ConfigError(problems)
    return out


def _row_problems(
    entry: dict[str, Any], file: str, line: int, first_line: dict[str, int]
) -> list[Problem]:
    # Checked here so a bad cell is reported at its own line of the CSV, not at the merged
    # directory. A row may update only some fields of someone already in the directory, so
    # only the cells it has are checked; the merged directory is validated as a whole later.
    if "id" not in entry:
        return [Problem(file, line, "id", "this row has no id")]
    problems = []
    if entry["id"] in first_line:
        problems.append(
            Problem(file, line, "id", f"'{entry['id']}' is also on line {first_line[entry['id']]}")
        )
    first_line.setdefault(entry["id"], line)
    try:
        Person.model_validate({"name": "placeholder", "agency": "placeholder", **entry})
    except ValidationError as exc:
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else ""
            message = err["msg"].removeprefix("Value error, ")
            value = str(entry.get(key))
            if value not in message:
                message = f"{message} (the cell says '{value}')"
            problems.append(Problem(file, line, key, message))
    return problems
