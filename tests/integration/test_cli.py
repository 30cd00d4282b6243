"""The command line, run as `bot.cli.main([...])` (and once as a real process behind a pipe).

Dates in the timeline tests are worked out by hand from the Wolverhampton table (raise 2
working days, find a way forward 3, stage 2 two, stage 3 one then two, stage 4 two then two:
cumulative 2, 5, 7, 10, 12) and the official bank holidays in shared/reference.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cli import main
from bot.directory import load_directory
from bot.policy import PRESETS
from store import db

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Settings come from these variables only: no developer's .env, no stray database."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/unused.db")
    monkeypatch.setenv("ESCALATION_CONFIG", str(EXAMPLES / "partnership.yaml"))
    for name in ("SLACK_BOT_TOKEN", "MICROSOFT_APP_ID"):
        monkeypatch.delenv(name, raising=False)
    yield


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def timeline_json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    status, out, err = run(capsys, "timeline", *argv, "--json")
    assert (status, err) == (0, "")
    data = json.loads(out)
    assert isinstance(data, list)
    return data


def due_by_step(rows: list[dict[str, Any]]) -> dict[tuple[int, str], str | None]:
    return {(r["stage"], r["step"]): r["due"] for r in rows}


def due_days(rows: list[dict[str, Any]]) -> set[date]:
    return {datetime.fromisoformat(r["due"]).date() for r in rows if r["due"] is not None}


# --- timeline -----------------------------------------------------------------------------

# From Mon 21 Dec 2026 10:00. English working days: 22, 23, 24 Dec; 29, 30, 31 Dec;
# 4, 5, 6, 7, 8 Jan; 11, 12, 13, 14, 15 Jan... (Fri 25 and Mon 28 Dec, Fri 1 Jan are holidays.)
ENGLAND_FROM_21_DEC = {
    (1, "raise"): "2026-12-23T17:00:00+00:00",  # 2 working days: Wed 23 Dec
    (1, "find-way-forward"): "2026-12-30T17:00:00+00:00",  # +3 = 5: Wed 30 Dec
    (1, "outcome-in-writing"): "2027-01-04T17:00:00+00:00",  # 2 after a resolution on 30 Dec
    (2, "managers-resolve"): "2027-01-04T17:00:00+00:00",  # +2 = 7: Mon 4 Jan
    (2, "outcome-in-writing"): "2027-01-06T17:00:00+00:00",
    (3, "refer-in-writing"): "2027-01-05T17:00:00+00:00",  # +1 = 8
    (3, "senior-dialogue"): "2027-01-07T17:00:00+00:00",  # +2 = 10: Thu 7 Jan
    (3, "outcome-in-writing"): "2027-01-11T17:00:00+00:00",
    (4, "raise-with-representative"): "2027-01-11T17:00:00+00:00",  # +2 = 12: Mon 11 Jan
    (4, "representatives-meet"): "2027-01-13T17:00:00+00:00",  # +2 = 14
    (4, "director-writes-to-chair"): "2027-01-15T17:00:00+00:00",  # exceptional: +2
    (4, "chair-decides"): "2027-01-22T17:00:00+00:00",  # exceptional: +5 more
    (4, "outcome-in-writing"): "2027-01-15T17:00:00+00:00",
}

# Scotland also has Mon 4 Jan (for Sat 2 Jan), so everything from day 7 is a day later.
SCOTLAND_FROM_21_DEC = {
    (1, "raise"): "2026-12-23T17:00:00+00:00",
    (1, "find-way-forward"): "2026-12-30T17:00:00+00:00",
    (1, "outcome-in-writing"): "2027-01-05T17:00:00+00:00",
    (2, "managers-resolve"): "2027-01-05T17:00:00+00:00",  # 7: Tue 5 Jan
    (2, "outcome-in-writing"): "2027-01-07T17:00:00+00:00",
    (3, "refer-in-writing"): "2027-01-06T17:00:00+00:00",
    (3, "senior-dialogue"): "2027-01-08T17:00:00+00:00",  # 10: Fri 8 Jan
    (3, "outcome-in-writing"): "2027-01-12T17:00:00+00:00",
    (4, "raise-with-representative"): "2027-01-12T17:00:00+00:00",  # 12: Tue 12 Jan
    (4, "representatives-meet"): "2027-01-14T17:00:00+00:00",
    (4, "director-writes-to-chair"): "2027-01-18T17:00:00+00:00",
    (4, "chair-decides"): "2027-01-25T17:00:00+00:00",
    (4, "outcome-in-writing"): "2027-01-18T17:00:00+00:00",
}
ENGLISH_HOLIDAYS = {date(2026, 12, 25), date(2026, 12, 28), date(2027, 1, 1)}


def test_timeline_json_gives_every_steps_stage_rule_and_due_date(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = timeline_json(capsys, "--policy", "wolverhampton", "--from", "2026-12-21T10:00")

    assert due_by_step(rows) == ENGLAND_FROM_21_DEC
    assert {"stage", "step", "rule", "due"} <= set(rows[0])
    assert [(r["stage"], r["step"], r["rule"]) for r in rows[:4]] == [
        (1, "raise", "2 working days"),
        (1, "find-way-forward", "3 working days"),
        (1, "outcome-in-writing", "2 working days"),
        (2, "managers-resolve", "2 working days"),
    ]
    assert rows[2]["condition"] == "after_resolution"
    raise_due = datetime.fromisoformat(rows[0]["due"])
    assert (raise_due.strftime("%a %d %b %H:%M"), raise_due.utcoffset()) == (
        "Wed 23 Dec 17:00",
        datetime.fromisoformat("2026-12-23T00:00+00:00").utcoffset(),
    )
    assert datetime.fromisoformat(rows[1]["due"]).strftime("%a %d %b %H:%M") == "Wed 30 Dec 17:00"


def test_timeline_over_christmas_skips_the_english_bank_holidays(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = timeline_json(
        capsys, "--policy", "wolverhampton", "--from", "2026-12-21T10:00", "--nation", "ENG"
    )

    assert due_by_step(rows) == ENGLAND_FROM_21_DEC
    assert not due_days(rows) & ENGLISH_HOLIDAYS
    assert all(d.weekday() < 5 for d in due_days(rows))


def test_timeline_in_scotland_also_skips_the_substitute_day_for_2_january(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = timeline_json(
        capsys, "--policy", "wolverhampton", "--from", "2026-12-21T10:00", "--nation", "SCT"
    )

    assert due_by_step(rows) == SCOTLAND_FROM_21_DEC
    assert not due_days(rows) & (ENGLISH_HOLIDAYS | {date(2027, 1, 4)})


def test_timeline_gives_no_due_date_where_the_policy_sets_no_fixed_timescale(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = timeline_json(capsys, "--policy", "harrow", "--from", "2026-12-21T10:00")
    steps = {r["step"]: r for r in rows}

    assert steps["discuss"]["due"] is None
    assert steps["discuss"]["rule"] == "no fixed timescale"
    # Harrow's local target is 2 working days: Wed 23 Dec.
    assert steps["discuss"]["local_target_due"] == "2026-12-23T17:00:00+00:00"
    assert [r["step"] for r in rows if r["due"] is not None] == ["implementation-report"]
    assert all(r["local_target_due"] is not None for r in rows if r["due"] is None)


def test_timeline_shows_british_summer_time_offsets_and_counts_across_the_change(
    capsys: pytest.CaptureFixture[str],
) -> None:
    summer = timeline_json(capsys, "--policy", "wolverhampton", "--from", "2026-06-26T10:00")
    # Clocks go back on Sun 25 Oct 2026: from Fri 23 Oct, 2 working days is Tue 27 Oct (GMT).
    autumn = timeline_json(capsys, "--policy", "wolverhampton", "--from", "2026-10-23T10:00")

    assert summer[0]["due"] == "2026-06-30T17:00:00+01:00"
    assert autumn[0]["due"] == "2026-10-27T17:00:00+00:00"


def test_timeline_reads_a_start_with_an_offset_as_that_moment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 01:00 in Karachi is 20:00 on Sun 20 Dec in London: 2 working days is Tue 22 Dec.
    rows = timeline_json(capsys, "--policy", "wolverhampton", "--from", "2026-12-21T01:00+05:00")

    assert rows[0]["due"] == "2026-12-22T17:00:00+00:00"


def test_timeline_as_text_is_in_british_date_format(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(
        capsys, "timeline", "--policy", "wolverhampton", "--from", "2026-12-21T10:00"
    )

    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert "bank holidays of ENG, from Mon 21 Dec, 10:00" in lines[0]
    assert lines[1] == "  stage 1 raise: 2 working days -> Wed 23 Dec, 17:00"
    assert lines[2] == "  stage 1 find-way-forward: 3 working days -> Wed 30 Dec, 17:00"
    assert len(lines) == 1 + len(ENGLAND_FROM_21_DEC)


def test_timeline_of_a_policy_file_given_by_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = tmp_path / "ours.yaml"
    shutil.copy(REPO / "bot" / "policies" / "wolverhampton.yaml", policy)

    rows = timeline_json(capsys, "--policy", str(policy), "--from", "2026-12-21T10:00")

    assert due_by_step(rows) == ENGLAND_FROM_21_DEC


@pytest.mark.parametrize("start", ["next tuesday", "2026-13-01T10:00", "2026-02-30", ""])
def test_timeline_refuses_a_start_that_is_not_a_date(
    capsys: pytest.CaptureFixture[str], start: str
) -> None:
    status, out, err = run(capsys, "timeline", "--policy", "wolverhampton", "--from", start)

    assert status != 0
    assert out == ""
    assert f"'{start}' is not a date and time; write it like 2026-12-21T10:00" in err
    assert "Traceback" not in err


def test_timeline_refuses_an_unknown_policy_naming_the_presets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(
        capsys, "timeline", "--policy", "wolverhamton", "--from", "2026-12-21T10:00"
    )

    assert status != 0
    assert out == ""
    assert "'wolverhamton' is not a preset" in err
    assert ", ".join(PRESETS) in err
    assert "Traceback" not in err


def test_timeline_refuses_an_unknown_nation_naming_the_four(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["timeline", "--policy", "wolverhampton", "--from", "2026-12-21", "--nation", "FRA"])
    out, err = capsys.readouterr()

    assert exited.value.code == 2
    assert out == ""
    assert "invalid choice: 'FRA'" in err
    assert all(nation in err for nation in ("ENG", "WLS", "SCT", "NIR"))


# --- policies -----------------------------------------------------------------------------


def test_policies_lists_all_five_presets_with_their_stages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(capsys, "policies")

    assert (status, err) == (0, "")
    headings = [line.split(":")[0] for line in out.splitlines() if not line.startswith(" ")]
    assert headings == list(PRESETS)
    assert "  1. Practitioners: 2 working days, 3 working days" in out
    assert "overall target 10 working days" in out


# --- check-config -------------------------------------------------------------------------


def test_check_config_passes_on_the_example_partnership(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(capsys, "check-config")

    assert (status, err) == (0, "")
    assert out.startswith("OK: Wolverhampton Safeguarding Together (fictional example)\n")
    assert "4 stages, bank holidays of ENG" in out
    assert "8 agencies, 32 people" in out


def broken_copy(tmp_path: Path, file: str, old: str, new: str) -> tuple[Path, Path, int]:
    """examples/ copied with one change; returns the config, the changed file and its line."""
    copy = tmp_path / "partnership"
    shutil.copytree(EXAMPLES, copy)
    changed = copy / file
    text = changed.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    text = text.replace(old, new)
    changed.write_text(text, encoding="utf-8")
    line = next(i for i, t in enumerate(text.splitlines(), start=1) if new.splitlines()[0] in t)
    return copy / "partnership.yaml", changed, line


BROKEN = {
    "unknown-manager": (
        "directory.yaml",
        "manager: tom.hadley, email: amara.okafor@example.org",
        "manager: tom.hadly, email: amara.okafor@example.org",
        "people[0].manager: no person with id 'tom.hadly'",
    ),
    "duplicate-person": (
        "directory.yaml",
        "{id: priya.nair, name: Priya Nair",
        "{id: amara.okafor, name: Priya Nair",
        "people[1].id: duplicate person id 'amara.okafor'",
    ),
    "unknown-policy": (
        "partnership.yaml",
        "policy: wolverhampton",
        "policy: wolverhamptn",
        "policy: no such policy file, and 'wolverhamptn' is not a preset",
    ),
    "yaml-syntax": (
        "partnership.yaml",
        "name: Wolverhampton Safeguarding Together (fictional example)",
        "name: Wolverhampton: Safeguarding Together",
        "not valid YAML: mapping values are not allowed here",
    ),
    "yaml-syntax-in-directory": (
        "directory.yaml",
        '  - {id: wmp, name: "West Midlands Police", kind: police',
        '  - {id: wmp, name: "West Midlands Police" kind: police',
        "not valid YAML: expected ',' or '}', but got '<scalar>'",
    ),
}


@pytest.mark.parametrize("case", BROKEN.values(), ids=BROKEN.keys())
def test_check_config_names_the_file_line_and_field_of_a_mistake(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    case: tuple[str, str, str, str],
) -> None:
    file, old, new, problem = case
    config, changed, line = broken_copy(tmp_path, file, old, new)
    monkeypatch.setenv("ESCALATION_CONFIG", str(config))

    status, out, err = run(capsys, "check-config")

    assert status != 0
    assert out == ""
    assert err.splitlines()[0] == "The configuration has problems:"
    assert f"  {changed}:{line}: {problem}" in err
    assert len(err.splitlines()) == 2, err  # that one problem, nothing else
    assert "Traceback" not in err


def test_check_config_takes_the_file_from_the_command_line_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config, changed, line = broken_copy(tmp_path, *BROKEN["unknown-manager"][:3])

    status, _, err = run(capsys, "check-config", "--config", str(config))

    assert status != 0
    assert f"{changed}:{line}: people[0].manager" in err


def test_check_config_reports_a_missing_config_file_plainly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.yaml"

    status, _, err = run(capsys, "check-config", "--config", str(missing))

    assert status != 0
    assert f"{missing}: cannot read the file" in err


# --- db upgrade ---------------------------------------------------------------------------


def test_db_upgrade_creates_a_fresh_sqlite_database_at_the_head_revision(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "var" / "new" / "bot.db"
    url = f"sqlite:///{path}"
    monkeypatch.setenv("DATABASE_URL", url)

    first = run(capsys, "db", "upgrade")
    second = run(capsys, "db", "upgrade")

    assert first == second == (0, f"The database is up to date ({url}).\n", "")
    engine = db.make_engine(url)
    try:
        assert db.current_revision(engine) == db.head_revision(url)
    finally:
        engine.dispose()


def test_db_upgrade_on_postgresql_never_prints_the_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    # The test server trusts local connections, so the password is accepted and unused.
    with_password = pg_url.replace("postgres@", "postgres:s3cret-pw@", 1)
    monkeypatch.setenv("DATABASE_URL", with_password)

    status, out, err = run(capsys, "db", "upgrade")

    assert (status, err) == (0, "")
    assert "s3cret-pw" not in out
    assert "postgres:***@" in out
    engine = db.make_engine(pg_url)
    try:
        assert db.current_revision(engine) == db.head_revision(pg_url)
    finally:
        engine.dispose()


# --- directory import ---------------------------------------------------------------------


@pytest.fixture
def directory_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "partnership"
    shutil.copytree(EXAMPLES, copy)
    return copy / "directory.yaml"


GOOD_CSV = """\
id,name,agency,title,roles,manager,email,slack_id
jo.bloggs,Jo Bloggs,rwt,School Nurse,practitioner;on_call,rosa.delgado,Jo.Bloggs@example.org,U0JOBLOGGS
ben.carter,Ben Carter,rwt,Senior Health Visitor,,,,
"""


def people_by_id(path: Path) -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {p["id"]: p for p in data["people"]}


def test_directory_import_adds_and_updates_people_from_a_csv(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, directory_copy: Path
) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(GOOD_CSV, encoding="utf-8")
    out_file = tmp_path / "merged.yaml"
    before = directory_copy.read_text(encoding="utf-8")

    status, out, err = run(
        capsys,
        "directory",
        "import",
        str(csv_file),
        "--directory",
        str(directory_copy),
        "--out",
        str(out_file),
    )

    assert (status, err) == (0, "")
    assert out == f"Imported 2 people (1 new, 1 updated) into {out_file}.\n"
    people = people_by_id(out_file)
    assert people["jo.bloggs"] == {
        "id": "jo.bloggs",
        "name": "Jo Bloggs",
        "agency": "rwt",
        "title": "School Nurse",
        "roles": ["practitioner", "on_call"],
        "manager": "rosa.delgado",
        "email": "Jo.Bloggs@example.org",
        "slack_id": "U0JOBLOGGS",
    }
    assert people["ben.carter"]["title"] == "Senior Health Visitor"
    assert people["ben.carter"]["manager"] == "rosa.delgado"  # blank cells change nothing
    assert len(people) == len(people_by_id(directory_copy)) + 1
    assert directory_copy.read_text(encoding="utf-8") == before  # --out leaves it alone
    merged = load_directory(out_file)
    assert [p.id for p in merged.chain("jo.bloggs")][:1] == ["rosa.delgado"]


def test_directory_import_replaces_the_partnerships_directory_and_keeps_a_backup(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    directory_copy: Path,
) -> None:
    monkeypatch.setenv("ESCALATION_CONFIG", str(directory_copy.parent / "partnership.yaml"))
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(GOOD_CSV, encoding="utf-8")
    before = directory_copy.read_text(encoding="utf-8")

    status, out, err = run(capsys, "directory", "import", str(csv_file))

    assert (status, err) == (0, "")
    assert f"The previous file is kept as {directory_copy}.bak." in out
    assert Path(f"{directory_copy}.bak").read_text(encoding="utf-8") == before
    assert "jo.bloggs" in people_by_id(directory_copy)
    assert run(capsys, "check-config")[0] == 0


BAD_ROWS = {
    "unknown-agency": (
        "sam.green,Sam Green,nhs-nowhere,,,,",
        "agency: no agency with id 'nhs-nowhere'",
    ),
    "unknown-manager": (
        "sam.green,Sam Green,rwt,,,rosa.delgad,",
        "manager: no person with id 'rosa.delgad'",
    ),
    "bad-email": (
        "sam.green,Sam Green,rwt,,,,not-an-email",
        "email: 'not-an-email' is not an email address",
    ),
    "no-id": (",Sam Green,rwt,,,,", "id: this row has no id"),
    "email-taken": (
        "sam.green,Sam Green,rwt,,,,ben.carter@example.org",
        "email: 'ben.carter@example.org' is used twice",
    ),
}


@pytest.mark.parametrize("case", BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_directory_import_reports_a_bad_row_at_its_line_and_writes_nothing(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    directory_copy: Path,
    case: tuple[str, str],
) -> None:
    row, problem = case
    csv_file = tmp_path / "people.csv"
    # Header, a good row, a blank line, then the bad row on line 4.
    csv_file.write_text(
        "id,name,agency,title,roles,manager,email\n"
        "jo.bloggs,Jo Bloggs,rwt,School Nurse,practitioner,rosa.delgado,\n"
        "\n"
        f"{row}\n",
        encoding="utf-8",
    )
    before = directory_copy.read_text(encoding="utf-8")

    status, out, err = run(
        capsys, "directory", "import", str(csv_file), "--directory", str(directory_copy)
    )

    assert status != 0
    assert out == ""
    assert f"  {csv_file}:4: {problem}" in err.splitlines()
    assert len(err.splitlines()) == 2, err
    assert directory_copy.read_text(encoding="utf-8") == before
    assert not Path(f"{directory_copy}.bak").exists()


def test_directory_import_reports_a_row_with_too_many_cells(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, directory_copy: Path
) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("id,name,agency\njo.bloggs,Jo Bloggs,rwt\nsam,Sam,rwt,extra\n")

    status, _, err = run(
        capsys, "directory", "import", str(csv_file), "--directory", str(directory_copy)
    )

    assert status != 0
    assert f"{csv_file}:3: this row has more cells than headers" in err


def test_directory_import_refuses_unknown_columns(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, directory_copy: Path
) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("id,name,agency,grade\njo.bloggs,Jo Bloggs,rwt,7\n")

    status, _, err = run(
        capsys, "directory", "import", str(csv_file), "--directory", str(directory_copy)
    )

    assert status != 0
    assert f"{csv_file}:1: unknown column(s): grade" in err


# --- output into a closed pipe ------------------------------------------------------------


class ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_output_into_a_closed_pipe_stops_quietly(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdout", ClosedPipe())

    status = main(["timeline", "--policy", "wolverhampton", "--from", "2026-12-21T10:00"])

    assert status == 141
    assert capsys.readouterr().err == ""


def escalation_bot() -> str:
    found = shutil.which("escalation-bot", path=str(Path(sys.executable).parent))
    assert found, "the escalation-bot script is not installed next to this Python"
    return found


@pytest.mark.parametrize("unbuffered", ["1", None], ids=["unbuffered", "buffered"])
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "text"])
def test_the_installed_command_piped_into_a_reader_that_has_gone_stops_quietly(
    unbuffered: str | None, as_json: bool
) -> None:
    # `escalation-bot timeline ... | head -1`, made certain: the reading end is closed before
    # the command starts, so its very first write meets a broken pipe.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    read_end, write_end = os.pipe()
    os.close(read_end)
    argv = [escalation_bot(), "timeline", "--policy", "wolverhampton", "--from", "2026-12-21"]
    try:
        done = subprocess.run(
            [*argv, *(["--json"] if as_json else [])],
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=REPO,
            env=env,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)

    assert done.stderr.decode() == ""
    assert done.returncode == 141


def test_the_installed_command_piped_into_head_prints_the_first_line_only() -> None:
    done = subprocess.run(
        f"'{escalation_bot()}' timeline --policy wolverhampton --from 2026-12-21T10:00 | head -1",
        shell=True,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0
    assert done.stdout.startswith("Wolverhampton Safeguarding Together (")
    assert done.stdout.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert "BrokenPipeError" not in done.stderr
