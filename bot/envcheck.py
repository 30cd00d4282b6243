"""`check-config`'s look at the environment: platform credentials, channels and the database.

Each finding is a sentence saying what is missing and what to set; errors stop `serve` from
working, warnings are worth fixing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.config import Partnership, Settings
from store import db


@dataclass(frozen=True)
class Finding:
    """One thing the environment lacks."""

    error: bool
    text: str

    def __str__(self) -> str:
        return f"{'error' if self.error else 'warning'}: {self.text}"


def _platforms(settings: Settings, partnership: Partnership) -> list[Finding]:
    out: list[Finding] = []
    channels = partnership.config.channels
    if settings.slack_enabled:
        if not (settings.slack_signing_secret or settings.slack_app_token):
            out.append(
                Finding(
                    True,
                    "SLACK_BOT_TOKEN is set but neither SLACK_SIGNING_SECRET (HTTP mode) nor "
                    "SLACK_APP_TOKEN (Socket Mode) is: Slack's requests cannot be accepted.",
                )
            )
        if not (settings.slack_bot_token or "").startswith("xoxb-"):
            out.append(Finding(True, "SLACK_BOT_TOKEN should be a bot token starting 'xoxb-'."))
        if settings.slack_app_token and not settings.slack_app_token.startswith("xapp-"):
            out.append(
                Finding(True, "SLACK_APP_TOKEN should be an app-level token starting 'xapp-'.")
            )
        for name in ("disputes", "oversight"):
            if not (channels.get(name) and channels[name].slack):
                out.append(
                    Finding(
                        False,
                        f"no Slack channel id for '{name}' in the partnership file "
                        f"(channels: {name}: {{slack: C...}}): its posts cannot go to Slack.",
                    )
                )
    elif settings.slack_signing_secret or settings.slack_app_token:
        out.append(
            Finding(
                False,
                "Slack settings are present but SLACK_BOT_TOKEN is not, so Slack is off.",
            )
        )
    if settings.teams_enabled and not settings.microsoft_app_password:
        out.append(
            Finding(
                True,
                "MICROSOFT_APP_ID is set but MICROSOFT_APP_PASSWORD is not: the bot cannot "
                "authenticate to Teams.",
            )
        )
    if not settings.teams_enabled and (
        settings.microsoft_app_password or settings.microsoft_app_tenant_id
    ):
        out.append(
            Finding(
                False, "Teams settings are present but MICROSOFT_APP_ID is not, so Teams is off."
            )
        )
    return out


def _database(settings: Settings) -> list[Finding]:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        folder = Path(url.database).parent
        if not folder.exists():
            return [
                Finding(
                    True,
                    f"the SQLite database's folder {folder} does not exist; create it or set "
                    "DATABASE_URL.",
                )
            ]
        if not Path(url.database).exists():
            return [
                Finding(False, "the database does not exist yet: run `escalation-bot db upgrade`.")
            ]
    engine = db.make_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current = db.current_revision(engine)
    except Exception as exc:  # any failure to connect is reported by name, in plain words
        shown = url.render_as_string(hide_password=True)
        return [Finding(True, f"cannot reach the database {shown} ({exc.__class__.__name__}).")]
    finally:
        engine.dispose()
    head = db.head_revision(settings.database_url)
    if current != head:
        return [
            Finding(
                False,
                f"the database schema is at {current or 'nothing'}, the code expects {head}: "
                "run `escalation-bot db upgrade`.",
            )
        ]
    return []


def check_environment(settings: Settings, partnership: Partnership) -> list[Finding]:
    """Everything the environment lacks for `serve` to run as configured."""
    return _platforms(settings, partnership) + _database(settings)
