"""Running it for real: health, readiness, metrics, logs, check-config's environment checks, and
a graceful shutdown (SIGTERM) in the middle of a busy outbox that loses and repeats nothing."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from alembic import command
from conftest import EXAMPLE_CONFIG, REPO, wait_until
from fakes.slack_api import FakeSlackApi
from sqlalchemy import select, text

from bot import logs
from bot.app import Core, build_core
from bot.cli import main
from bot.clock import FakeClock
from bot.config import Settings
from bot.disputes import DisputeDetails
from bot.messages import Message, Recipient
from bot.web import build_server, make_web_app
from store import db
from store.models import OutboxRow


def details(case: str = "CS-204611", when: date | None = None) -> DisputeDetails:
    return DisputeDetails(
        raised_by="amara.okafor",
        raising_agency="cwc-childrens",
        receiving_agency="rwt",
        receiving_person="ben.carter",
        category="threshold",
        case_ref=case,
        decision="The referral was closed with no further action.",
        reasons="Missed appointments.",
        outcome_sought="A strategy discussion.",
        disagreement_date=when or date(2026, 11, 26),
    )


def slack_config(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE_CONFIG.parent, tmp_path / "cfg")
    config = tmp_path / "cfg" / "partnership.yaml"
    config.write_text(
        config.read_text()
        .replace("disputes: {slack: null", "disputes: {slack: C0DISPUTES")
        .replace("oversight: {slack: null", "oversight: {slack: C0OVERSIGHT")
    )
    return config


@pytest.fixture
async def app_client(core: Core) -> AsyncIterator[TestClient[object, object]]:
    server = build_server(core)  # with the tick: readiness checks that it runs
    async with TestClient(TestServer(make_web_app(server), host="127.0.0.1")) as client:
        yield client


async def test_healthz_and_readyz_when_all_is_well(app_client: TestClient[object, object]) -> None:
    assert (await (await app_client.get("/healthz")).json()) == {"status": "ok"}
    response = await app_client.get("/readyz")
    body = await response.json()
    assert response.status == 200, body
    assert body["status"] == "ready" and body["failed"] == []
    assert set(body["checks"]) == {"database", "migrations", "scheduler", "outbox"}


async def test_readyz_names_an_old_schema(
    core: Core, app_client: TestClient[object, object]
) -> None:
    command.downgrade(db.alembic_config(core.settings.database_url), "0001")
    response = await app_client.get("/readyz")
    body = await response.json()
    assert response.status == 503
    assert body["failed"] == ["migrations"]
    assert "code expects" in body["checks"]["migrations"]["detail"]


async def test_readyz_names_a_stuck_outbox(core: Core, clock: FakeClock) -> None:
    with core.store.unit() as session:
        core.store.enqueue(session, [Message(Recipient.person("nobody"), "hello")], now=clock.now())
    clock.advance(timedelta(minutes=11))  # past OUTBOX_STUCK_SECONDS (600)
    server = build_server(core, tick=False)  # no tick: the message stays where it is
    async with TestClient(TestServer(make_web_app(server), host="127.0.0.1")) as client:
        body = await (await client.get("/readyz")).json()
    assert body["failed"] == ["outbox"]
    assert "660 s old" in body["checks"]["outbox"]["detail"]


async def test_metrics_in_prometheus_format(
    core: Core, app_client: TestClient[object, object]
) -> None:
    core.service.open(details())
    response = await app_client.get("/metrics")
    assert response.status == 200
    page = await response.text()
    assert 'escalation_disputes_open{stage="1"} 1.0' in page
    assert 'escalation_outbox_messages{state="pending"}' in page
    assert "escalation_outbox_oldest_unsent_seconds" in page
    assert "escalation_tick_seconds_bucket" in page


async def test_slack_requests_are_counted_and_timed(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with FakeSlackApi(token="xoxb-test") as api:
        settings = Settings(
            database_url=f"sqlite:///{tmp_path}/m.db",
            escalation_config=str(slack_config(tmp_path)),
            slack_bot_token="xoxb-test",
            slack_signing_secret="secret",
            slack_api_url=api.base_url,
        )
        core = build_core(settings, clock=clock)
        server = build_server(core, tick=False)
        async with TestClient(TestServer(make_web_app(server), host="127.0.0.1")) as client:
            bad = await client.post("/slack/events", data=b"command=/escalate")  # unsigned
            assert bad.status == 401
            page = await (await client.get("/metrics")).text()
        core.store.dispose()
    assert 'escalation_requests_total{outcome="4xx",platform="slack"} 1.0' in page
    assert 'escalation_request_seconds_count{platform="slack"} 1.0' in page


def test_json_logs_carry_references_and_never_case_details() -> None:
    stream = io.StringIO()
    logs.configure("INFO", "json", stream)
    try:
        logging.getLogger("bot.test").info(
            "message parked",
            extra={"ref": "WST-2026-0001", "reasons": "the child's name", "case_ref": "CS-1"},
        )
    finally:
        logs.configure("WARNING", "text", sys.stderr)
    event = json.loads(stream.getvalue().strip())
    assert event["message"] == "message parked" and event["ref"] == "WST-2026-0001"
    assert event["level"] == "info" and "time" in event
    assert "reasons" not in event and "case_ref" not in event


def test_check_config_names_what_the_environment_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/env.db")
    monkeypatch.setenv("ESCALATION_CONFIG", str(EXAMPLE_CONFIG))
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "MICROSOFT_APP_ID"):
        monkeypatch.delenv(name, raising=False)
    assert main(["check-config"]) == 0
    assert "run `escalation-bot db upgrade`" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert main(["check-config"]) == 0
    assert "Environment:" not in capsys.readouterr().out
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    assert main(["check-config"]) == 1
    out = capsys.readouterr().out
    assert "neither SLACK_SIGNING_SECRET (HTTP mode) nor SLACK_APP_TOKEN" in out
    assert "no Slack channel id for 'disputes'" in out
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    monkeypatch.setenv("MICROSOFT_APP_ID", "00000000-0000-0000-0000-000000000001")
    assert main(["check-config"]) == 1
    assert "MICROSOFT_APP_PASSWORD is not" in capsys.readouterr().out
    monkeypatch.delenv("MICROSOFT_APP_ID")
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u:secret@127.0.0.1:1/none")
    assert main(["check-config"]) == 1
    out = capsys.readouterr().out
    assert "cannot reach the database" in out and "secret" not in out


# ---- graceful shutdown ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_sigterm_in_a_busy_outbox_loses_and_repeats_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    database = f"sqlite:///{tmp_path}/serve.db"
    config = slack_config(tmp_path)
    async with FakeSlackApi(token="xoxb-test") as api:
        for user, email in (("U0AMARA", "amara.okafor"), ("U0BEN", "ben.carter")):
            api.add_user(user, f"{email}@example.org", email)
        settings = Settings(
            database_url=database,
            escalation_config=str(config),
            slack_bot_token="xoxb-test",
            slack_signing_secret="secret",
            slack_api_url=api.base_url,
        )
        # Forty disputes' messages waiting (a busy outbox), queued "now" by the real clock.
        clock = FakeClock(datetime.now(UTC) - timedelta(minutes=1))
        core = build_core(settings, clock=clock)
        for n in range(40):
            assert core.service.open(details(f"CS-{n:06d}", clock.now().date())).ok
        with core.store.unit() as session:
            total = len(session.execute(select(OutboxRow)).scalars().all())
        api.delay = 0.02  # a slow Slack: the batch is still going when SIGTERM comes
        env = {
            **os.environ,
            "DATABASE_URL": database,
            "ESCALATION_CONFIG": str(config),
            "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_SIGNING_SECRET": "secret",
            "SLACK_API_URL": api.base_url,
            "TICK_SECONDS": "1",
            "SHUTDOWN_SECONDS": "20",
            "LOG_FORMAT": "json",
            "PYTHONPATH": str(REPO),
        }

        async def serve() -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "serve",
                env={**env, "PORT": str(free_port())},
                cwd=str(REPO),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )

        def posted() -> int:
            return len(api.calls_to("chat.postMessage"))

        first = await serve()
        await wait_until(lambda: posted() >= 10, "the first sends")
        first.send_signal(signal.SIGTERM)
        _, errors = await asyncio.wait_for(first.communicate(), 30)
        assert first.returncode == 0, errors.decode()[-2000:]
        sent_before = posted()
        assert sent_before < total, "SIGTERM came after everything was sent: nothing was tested"
        with core.store.unit() as session:
            states = [r.status for r in session.execute(select(OutboxRow)).scalars()]
        # Graceful: the batch in progress was finished and recorded, nothing left half-done.
        assert "sending" not in states

        second = await serve()

        def drained() -> bool:
            with core.store.unit() as session:
                waiting = session.execute(
                    text("SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')")
                ).scalar_one()
            return waiting == 0

        await wait_until(drained, "the outbox to drain")
        second.send_signal(signal.SIGTERM)
        await asyncio.wait_for(second.communicate(), 30)
        assert second.returncode == 0
        keys = [
            args["metadata"]["event_payload"]["key"]
            for args in api.calls_to("chat.postMessage")
            if isinstance(args.get("metadata"), dict)
        ]
        with core.store.unit() as session:
            rows = session.execute(select(OutboxRow)).scalars().all()
        core.store.dispose()
    assert len(keys) == len(set(keys)), "a message was posted twice"
    assert {r.status for r in rows} == {"sent"}
    # Every message went exactly once: a post, or (a thread root already posted) an update.
    assert set(keys) <= {r.key for r in rows}
    assert len(keys) + len(api.calls_to("chat.update")) == total
