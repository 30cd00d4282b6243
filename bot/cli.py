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
    _record_commands(sub)
    _teams_commands(sub)
    return parser


def _settings() -> Settings:
    return Settings()


def _check_config(args: argparse.Namespace) -> int:
    from bot.envcheck import check_environment

    settings = _settings()
    path = args.config or settings.escalation_config
    partnership = load_partnership(path)
    d = partnership.directory
    print(f"OK: {partnership.config.name}")
    print(
        f"  policy    {partnership.policy.name} ({partnership.policy.version}), {len(partnership.policy.stages)} stages, bank holidays of {partnership.policy.nation}"
    )
    print(f"  directory {len(d.agencies)} agencies, {len(d.people)} people")
    for warning in partnership.warnings:
        print(f"  warning: {warning}")
    findings = check_environment(settings, partnership)
    platforms = [
        name
        for name, on in (("Slack", settings.slack_enabled), ("Teams", settings.teams_enabled))
        if on
    ]
    print(f"  platforms {', '.join(platforms) or 'none (the console)'}")
    if findings:
        print("Environment:")
    for finding in findings:
        print(f"  {finding}")
    if settings.teams_enabled:
        from bot.adapters.teams.reach import check_lines

        for line in check_lines(partnership, settings):
            print(f"  {line}")
    return 1 if any(f.error for f in findings) else 0


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
                await ticker.stop()

        return asyncio.run(main())
    finally:
        core.store.dispose()


def _chat(args: argparse.Namespace) -> int:
    return run_console(args.person, timekeeper=True)


def _demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    return run_demo(args.policy, sys.stdout)


def _serve(args: argparse.Namespace) -> int:
    from bot import logs

    settings = _settings()
    logs.configure(settings.log_level, settings.log_format)
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


# ---- the record: audit verify, export, report, retention -----------------------------------


def _record_commands(sub: Any) -> None:
    p = sub.add_parser("audit", help="check the tamper-evident record")
    asub = p.add_subparsers(title="audit commands", metavar="COMMAND")
    verify = asub.add_parser(
        "verify",
        help="check every dispute's hash chain, naming each event edited, deleted, inserted or reordered",
    )
    verify.add_argument(
        "--heads",
        help="a file of each chain's last hash, kept somewhere else: checked if it exists (catches "
        "events cut from the end of a chain), then brought up to date when all is well",
    )
    verify.set_defaults(func=_audit_verify)

    p = sub.add_parser("export", help="a dispute's record, for the child's or adult's file")
    p.add_argument("ref", help="the dispute reference, e.g. WST-2026-0001")
    p.add_argument("--format", choices=["md", "html", "pdf"], default="md")
    p.add_argument(
        "--as",
        dest="person",
        required=True,
        help="your directory id: the export is recorded against you, and refused if you may not see the dispute",
    )
    p.add_argument("--out", help="write to this file (default: standard output; REF.pdf for pdf)")
    p.set_defaults(func=_export)

    p = sub.add_parser("report", help="the board report on the disputes closed in a period")
    p.add_argument("--from", dest="start", required=True, help="first day, e.g. 2026-04-01")
    p.add_argument("--to", dest="end", required=True, help="last day, e.g. 2027-03-31")
    p.add_argument("--format", choices=["html", "md", "csv"], default="html")
    p.add_argument("--out", help="write to this file (default: standard output)")
    p.set_defaults(func=_report)

    p = sub.add_parser(
        "retention",
        help="remove the personal details of disputes closed longer ago than the retention period",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    p.add_argument(
        "--as",
        dest="person",
        help="the partnership admin running it (recorded on each dispute; default: the retention schedule)",
    )
    p.set_defaults(func=_retention)


def _records_clock() -> Any:
    """The clock the record commands use (tests put a simulated one here)."""
    from bot.clock import SystemClock

    return SystemClock()


def _archive() -> Any:
    from bot.app import build_core
    from bot.archive import Archive

    core = build_core(_settings(), clock=_records_clock())
    return core, Archive(core.service)


def _audit_verify(args: argparse.Namespace) -> int:
    from bot.records import check_heads, heads_of

    core, archive = _archive()
    try:
        checks = archive.verify()
    finally:
        core.store.dispose()
    findings = [f for c in checks for f in c.findings]
    heads_path = Path(args.heads) if args.heads else None
    if heads_path is not None and heads_path.exists():
        try:
            saved = json.loads(heads_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"Cannot read the heads file {heads_path}: {exc}", file=sys.stderr)
            return 2
        findings += check_heads(checks, saved)
    events = sum(c.events for c in checks)
    print(
        f"Checked {len(checks)} dispute{'s' if len(checks) != 1 else ''}, "
        f"{events} event{'s' if events != 1 else ''}."
    )
    if findings:
        for finding in findings:
            print(f"BROKEN {finding}")
        broken = len({f.ref for f in findings})
        print(
            f"The record has been altered: {len(findings)} problem{'s' if len(findings) != 1 else ''} "
            f"in {broken} dispute{'s' if broken != 1 else ''}."
        )
        return 1
    redacted = sum(c.redacted for c in checks)
    extra = f" ({redacted} redacted under the retention policy, as recorded)" if redacted else ""
    print(f"Every hash chain is intact: no event edited, deleted, inserted or reordered{extra}.")
    if heads_path is not None:
        heads_path.write_text(
            json.dumps(heads_of(checks), indent=1, sort_keys=True), encoding="utf-8"
        )
        print(
            f"Heads saved to {heads_path}; keep a copy somewhere the database's users cannot write."
        )
    return 0


def _write(content: str | bytes, out: str | None) -> None:
    if out is None:
        if isinstance(content, bytes):
            sys.stdout.buffer.write(content)
        else:
            sys.stdout.write(content)
        return
    path = Path(out)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    print(f"Written to {path}.")


def _export(args: argparse.Namespace) -> int:
    from bot import chromium

    to_pdf = None
    if args.format == "pdf":
        try:
            program = chromium.require()
        except chromium.ChromiumMissing as exc:
            print(str(exc), file=sys.stderr)
            return 1

        def to_pdf(page: str) -> bytes:
            return chromium.html_to_pdf(page, program=program)

    core, archive = _archive()
    try:
        done = archive.export(args.ref, args.person, args.format, to_pdf=to_pdf)
    except chromium.ChromiumFailed as exc:
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        core.store.dispose()
    if not done.ok:
        print(done.text, file=sys.stderr)
        return 1
    out = args.out or (f"{args.ref.strip().upper()}.pdf" if args.format == "pdf" else None)
    _write(done.content, out)
    if done.check is not None and not done.check.ok:
        print(f"Warning: {done.check.summary()}", file=sys.stderr)
    return 0


def _parse_day(text: str) -> Any:
    from datetime import date

    for parse in (date.fromisoformat, lambda t: datetime.strptime(t, "%d/%m/%Y").date()):
        try:
            return parse(text.strip())
        except ValueError:
            continue
    return None


def _report(args: argparse.Namespace) -> int:
    from bot.archive import Archive

    start, end = _parse_day(args.start), _parse_day(args.end)
    for given, parsed in ((args.start, start), (args.end, end)):
        if parsed is None:
            print(
                f"'{given}' is not a date; write it like 2026-04-01 or 01/04/2026", file=sys.stderr
            )
            return 2
    if end < start:
        print("The period ends before it starts: --to must be on or after --from.", file=sys.stderr)
        return 2
    core, archive = _archive()
    try:
        report = archive.report(start, end)
    finally:
        core.store.dispose()
    _write(Archive.render_report(report, args.format), args.out)
    return 0


def _retention(args: argparse.Namespace) -> int:
    from bot.archive import describe_retention

    core, archive = _archive()
    try:
        if args.person:
            person = core.service.directory.get(args.person)
            if person is None or not person.has_role("admin"):
                print(
                    f"Only a partnership admin can run retention; '{args.person}' is not one.",
                    file=sys.stderr,
                )
                return 1
        items = archive.retention(dry_run=args.dry_run, actor=args.person)
        tz = core.partnership.policy.timezone
        days = core.partnership.config.retention_days
    finally:
        core.store.dispose()
    if not items:
        print(
            f"No dispute was closed more than {days} days ago with its personal details still kept."
        )
        return 0
    heading = "Dry run: nothing changed." if args.dry_run else "Done, and recorded on each dispute."
    print(
        f"{len(items)} dispute{'s' if len(items) != 1 else ''} past the retention period of {days} days. {heading}"
    )
    for item in items:
        print(f"  {describe_retention(item, tz, dry_run=args.dry_run)}")
    return 1 if any(item.skipped for item in items) else 0


def _teams_commands(sub: Any) -> None:
    p = sub.add_parser(
        "teams-package", help="build the Teams app package (a zip a Teams admin uploads)"
    )
    p.add_argument(
        "--app-id", help="the bot's Microsoft App ID (default: MICROSOFT_APP_ID)", default=None
    )
    p.add_argument(
        "--website", required=True, help="the partnership's https:// web page about the bot"
    )
    p.add_argument("--privacy-url", help="privacy notice (default: WEBSITE/privacy)")
    p.add_argument("--terms-url", help="terms of use (default: WEBSITE/terms)")
    p.add_argument("--developer", help="publisher name shown in Teams (default: the partnership)")
    p.add_argument("--version", default="1.0.0", help="the app's version (raise it to update)")
    p.add_argument("--manifest", default="teams/manifest.json", help="the manifest template")
    p.add_argument("--out", default="var/escalation-bot-teams.zip", help="where to write it")
    p.add_argument("--config", help="partnership file (for the default publisher name)")
    p.set_defaults(func=_teams_package)


def _teams_package(args: argparse.Namespace) -> int:
    from bot.adapters.teams.package import build_package

    settings = _settings()
    app_id = args.app_id or settings.microsoft_app_id or ""
    developer = args.developer
    if not developer:
        developer = load_partnership(args.config or settings.escalation_config).config.name
    try:
        out = build_package(
            Path(args.manifest),
            Path(args.out),
            app_id=app_id,
            website=args.website,
            developer=developer,
            privacy_url=args.privacy_url,
            terms_url=args.terms_url,
            version=args.version,
        )
    except (ValueError, OSError) as exc:
        print(f"Cannot build the Teams package: {exc}", file=sys.stderr)
        return 1
    print(f"Wrote {out}: upload it in the Teams admin centre (Teams apps, Manage apps, Upload).")
    return 0
