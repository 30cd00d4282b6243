"""The command line: serve, chat, check-config, db upgrade, policies, timeline, directory import."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import yaml

from bot.config import Settings, load_partnership
from bot.policy import PRESETS
from bot.yamlsource import ConfigError, Problem


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's final flush
        return status
    except BrokenPipeError:
        # The reader went away (`escalation-bot timeline ... | head -1`): stop quietly with the
        # status a SIGPIPE'd tool has, instead of a traceback.
        _discard_stdout()
        return 141
    except ConfigError as exc:
        print("The configuration has problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _discard_stdout() -> None:
    # Point stdout at /dev/null so what is still buffered cannot raise again at exit.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass  # stdout is not a real file (captured in tests): nothing will flush to a pipe


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="escalation-bot",
        description="Runs a safeguarding partnership's escalation policy in chat.",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser(
        "serve", help="run the bot (the console when no Slack or Teams credentials are set)"
    )
    p.add_argument("--as", dest="person", help="console: the directory person to chat as")
    p.set_defaults(func=_serve)

    p = sub.add_parser(
        "chat", help="chat with the bot in the terminal as a person from the directory"
    )
    p.add_argument("--as", dest="person", help="the person's directory id (asked if not given)")
    p.set_defaults(func=_chat)

    p = sub.add_parser("check-config", help="check the partnership's config, policy and directory")
    p.add_argument(
        "--config",
        help="partnership file (default: ESCALATION_CONFIG or examples/partnership.yaml)",
    )
    p.set_defaults(func=_check_config)

    p = sub.add_parser("db", help="database commands")
    dbsub = p.add_subparsers(title="db commands", metavar="COMMAND")
    up = dbsub.add_parser("upgrade", help="bring the database schema up to date")
    up.set_defaults(func=_db_upgrade)

    p = sub.add_parser("policies", help="list the policy presets and their stages")
    p.set_defaults(func=_policies)

    p = sub.add_parser(
        "demo", help="watch one dispute run from intake to check-back on a simulated clock"
    )
    p.add_argument(
        "--policy", default="wolverhampton", choices=sorted(PRESETS), help="which preset to run"
    )
    p.set_defaults(func=_demo)

    p = sub.add_parser(
        "timeline", help="a policy's deadlines with real dates, if each step takes its full time"
    )
    p.add_argument("--policy", required=True, help="a preset name or a policy file")
    p.add_argument(
        "--from",
        dest="start",
        required=True,
        help="when the disagreement arose, e.g. 2026-12-21T10:00 (London time unless an offset is given)",
    )
    p.add_argument(
        "--nation",
        choices=["ENG", "WLS", "SCT", "NIR"],
        help="whose bank holidays to use (default: the policy's)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_timeline)

    p = sub.add_parser("directory", help="directory commands")
    dsub = p.add_subparsers(title="directory commands", metavar="COMMAND")
    imp = dsub.add_parser(
        "import", help="merge people from an HR-style CSV export into the directory file"
    )
    imp.add_argument(
        "csv",
        help="CSV with columns id,name,agency[,title,roles,manager,deputy,email,slack_id,teams_id]; roles separated by ';'",
    )
    imp.add_argument("--directory", help="directory file to update (default: the partnership's)")
    imp.add_argument("--out", help="write the merged directory here instead of replacing the file")
    imp.set_defaults(func=_directory_import)
    return parser


def _settings() -> Settings:
    return Settings()


def _check_config(args: argparse.Namespace) -> int:
    path = args.config or _settings().escalation_config
    partnership = load_partnership(path)
    d = partnership.directory
    print(f"OK: {partnership.config.name}")
    print(
        f"  policy    {partnership.policy.name} ({partnership.policy.version}), {len(partnership.policy.stages)} stages, bank holidays of {partnership.policy.nation}"
    )
    print(f"  directory {len(d.agencies)} agencies, {len(d.people)} people")
    for warning in partnership.warnings:
        print(f"  warning: {warning}")
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from store import db

    settings = _settings()
    db.upgrade(settings.database_url)
    print(f"The database is up to date ({_safe_url(settings.database_url)}).")
    return 0


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _policies(args: argparse.Namespace) -> int:
    from bot.policy import PRESETS, load_preset

    for name in PRESETS:
        policy = load_preset(name)
        target = (
            f"; overall target {policy.overall_target.deadline.describe()}"
            if policy.overall_target
            else ""
        )
        print(f"{name}: {policy.name} ({policy.version}){target}")
        for stage in policy.stages:
            rules = ", ".join(
                f"{s.deadline.describe()}{' if ' + s.condition.replace('_', ' ') if s.condition else ''}"
                for s in stage.steps
            )
            print(f"  {stage.number}. {stage.name}: {rules}")
    return 0


def _timeline(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from bot.policy import load_policy, plan_timeline
    from bot.workdays import WorkingCalendar, format_when

    # Looked up now, not bound at import: whoever replaced sys.stdout since (tests) is honoured.
    out = out or sys.stdout

    policy = load_policy(args.policy, Path.cwd())
    tz = ZoneInfo(policy.timezone)
    try:
        start = datetime.fromisoformat(args.start)
    except ValueError:
        print(
            f"'{args.start}' is not a date and time; write it like 2026-12-21T10:00",
            file=sys.stderr,
        )
        return 2
    if start.tzinfo is None:
        start = start.replace(tzinfo=tz)
    calendar = WorkingCalendar(
        args.nation or policy.nation,
        start=policy.working_hours.start,
        end=policy.working_hours.end,
        tz=policy.timezone,
    )
    rows = plan_timeline(policy, start, calendar)

    def local(value: datetime | None) -> str | None:
        return value.astimezone(tz).isoformat() if value is not None else None

    if args.json:
        data: list[dict[str, Any]] = [
            {
                "stage": r.stage,
                "stage_name": r.stage_name,
                "step": r.step,
                "title": r.title,
                "rule": r.rule,
                "condition": r.condition,
                "due": local(r.due),
                "local_target_due": local(r.local_target_due),
            }
            for r in rows
        ]
        json.dump(data, out, indent=2)
        out.write("\n")
        return 0
    out.write(
        f"{policy.name} ({policy.version}), bank holidays of {calendar.nation}, from {format_when(start, tz)}\n"
    )
    for r in rows:
        due = (
            format_when(r.due, tz, now=start)
            if r.due
            else f"no fixed timescale (local target {format_when(r.local_target_due, tz, now=start) if r.local_target_due else '-'})"
        )
        cond = f" [only {r.condition.replace('_', ' ')}]" if r.condition else ""
        out.write(f"  stage {r.stage} {r.step}: {r.rule} -> {due}{cond}\n")
    return 0


def _directory_import(args: argparse.Namespace) -> int:
    from bot.directory import parse_directory, people_from_csv
    from bot.yamlsource import Located, load_yaml_file

    csv_path = Path(args.csv)
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(
            [Problem(str(csv_path), None, "", f"cannot read the file ({exc.strerror})")]
        ) from exc
    rows = people_from_csv(text, file=str(csv_path))
    row_lines = _csv_row_lines(text)
    if args.directory:
        target = Path(args.directory)
    else:
        config_path = Path(_settings().escalation_config)
        located_config = load_yaml_file(config_path)
        target = config_path.parent / str(located_config.data.get("directory", "directory.yaml"))
    located = load_yaml_file(target)
    data = dict(located.data or {})
    people = list(data.get("people") or [])
    index = {p.get("id"): i for i, p in enumerate(people) if isinstance(p, dict)}
    added = updated = 0
    origin: dict[int, int] = {}  # place in `people` -> the CSV line it came from
    for row, line in zip(rows, row_lines, strict=True):
        # .get: a row with no id is reported by validation below, at its line, not a KeyError.
        if row.get("id") in index:
            people[index[row["id"]]] = {**people[index[row["id"]]], **row}
            origin[index[row["id"]]] = line
            updated += 1
        else:
            index[row.get("id")] = len(people)
            origin[len(people)] = line
            people.append(row)
            added += 1
    data["people"] = people
    merged = Located(str(target), data, dict(located.lines))
    try:
        parse_directory(merged)  # validate before writing anything
    except ConfigError as exc:
        # A bad row is reported at its line of the CSV, with the CSV's column name.
        raise ConfigError([_csv_problem(p, origin, str(csv_path)) for p in exc.problems]) from exc
    out_path = Path(args.out) if args.out else target
    if not args.out:
        target.with_suffix(target.suffix + ".bak").write_text(
            target.read_text(encoding="utf-8"), encoding="utf-8"
        )
    out_path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    print(f"Imported {len(rows)} people ({added} new, {updated} updated) into {out_path}.")
    if not args.out:
        print(f"The previous file is kept as {target}.bak.")
    return 0


def _csv_row_lines(text: str) -> list[int]:
    """The line each data row ends on, for the rows `people_from_csv` keeps (not blank ones)."""
    reader = csv.reader(io.StringIO(text))
    next(reader, None)  # the header
    return [reader.line_num for row in reader if any(cell.strip() for cell in row)]


_PERSON_FIELD = re.compile(r"^people\[(\d+)\]\.?(.*)$")


def _csv_problem(problem: Problem, origin: dict[int, int], csv_file: str) -> Problem:
    match = _PERSON_FIELD.match(problem.field)
    if match is None or int(match.group(1)) not in origin:
        return problem
    return Problem(csv_file, origin[int(match.group(1))], match.group(2), problem.message)


def _pick_person(core: Any, person_id: str | None, stdin: TextIO, out: TextIO) -> Any:
    directory = core.service.directory
    if person_id:
        person = directory.get(person_id)
        if person is None:
            raise SystemExit(
                f"Nobody in the directory has the id '{person_id}'. Try one of: {', '.join(list(directory.people)[:8])}..."
            )
        return person
    people = sorted(directory, key=lambda p: (directory.agency_name(p.agency), p.name))
    out.write("Who are you? (fictional people from the example directory)\n")
    for i, p in enumerate(people, start=1):
        out.write(f"  {i:2}. {p.name} - {p.title or ''}, {directory.agency_name(p.agency)}\n")
    while True:
        out.write("Number or id: ")
        out.flush()
        line = stdin.readline()
        if not line:
            raise SystemExit(0)
        choice = line.strip()
        if choice.isdigit() and 1 <= int(choice) <= len(people):
            return people[int(choice) - 1]
        if directory.get(choice):
            return directory.get(choice)
        out.write("Please type one of the numbers above.\n")


def run_console(
    person_id: str | None,
    *,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    settings: Settings | None = None,
    clock: Any = None,
    timekeeper: bool = False,
) -> int:
    """Chat in the terminal as a person from the directory (with the tick running if asked)."""
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    from bot.adapters.console import ConsoleChat, ConsolePlatform
    from bot.app import build_core
    from bot.scheduler import Timekeeper

    core = build_core(settings or _settings(), clock=clock)
    try:
        person = _pick_person(core, person_id, stdin, out)
        platform = ConsolePlatform(out, lambda: core.service.directory)
        dispatcher = core.dispatcher([platform])
        chat = ConsoleChat(core.conversations, dispatcher, platform, person, stdin=stdin)
        ticker = Timekeeper(core.service, dispatcher, core.settings.tick_seconds)

        async def main() -> int:
            if timekeeper:
                ticker.start()
            try:
                return await chat.run()
            finally:
                ticker.stop()

        return asyncio.run(main())
    finally:
        core.store.dispose()


def _chat(args: argparse.Namespace) -> int:
    return run_console(args.person, timekeeper=True)


def _demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    return run_demo(args.policy, sys.stdout)


def _serve(args: argparse.Namespace) -> int:
    settings = _settings()
    if not settings.slack_enabled and not settings.teams_enabled:
        print(
            "No Slack or Teams credentials are set, so the bot runs here in the terminal (the console platform)."
        )
        return run_console(args.person, settings=settings, timekeeper=True)
    from bot.app import build_core
    from bot.web import run_server

    core = build_core(settings)
    try:
        return run_server(core)
    finally:
        core.store.dispose()
