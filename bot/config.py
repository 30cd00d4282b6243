"""Settings from the environment, and the partnership's YAML: config, policy and directory.

Loads and cross-checks the files, reporting every problem with file, line and field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.directory import Directory, Person, check_roles, parse_directory
from bot.policy import Policy, load_policy
from bot.workdays import WorkingCalendar
from bot.yamlsource import (
    ConfigError,
    Located,
    Problem,
    load_yaml_file,
    parse_clock_time,
    problems_from_validation,
)

DEFAULT_CONFIG = "examples/partnership.yaml"
DEFAULT_DATABASE = "sqlite:///var/escalation-bot.db"


class Settings(BaseSettings):
    """Every setting, from the environment (or a .env file)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = DEFAULT_DATABASE
    escalation_config: str = DEFAULT_CONFIG
    host: str = "127.0.0.1"
    port: int = 3978
    log_level: str = "INFO"
    tick_seconds: int = Field(default=30, ge=1, le=3600)
    log_format: Literal["auto", "json", "text"] = "auto"
    # /readyz fails when the oldest unsent message is older than this (the outbox is stuck).
    outbox_stuck_seconds: int = Field(default=600, ge=30)
    # How long a stopping server may take to finish the tick and the sends in progress.
    shutdown_seconds: float = Field(default=20.0, gt=0, le=300)
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str = "https://slack.com/api/"
    # Seconds of Slack's 3 the bot may spend before it must answer (the rest is the network).
    slack_ack_budget: float = Field(default=2.0, gt=0, le=2.5)
    # How often one person may use /escalate: `command_burst` at once, refilled at this rate.
    command_rate_per_minute: int = Field(default=10, ge=1, le=600)
    command_burst: int = Field(default=10, ge=1, le=600)
    microsoft_app_id: str | None = None
    microsoft_app_password: str | None = None
    microsoft_app_tenant_id: str | None = None

    @property
    def slack_enabled(self) -> bool:
        """Whether Slack credentials are set."""
        return bool(self.slack_bot_token)

    @property
    def teams_enabled(self) -> bool:
        """Whether Teams credentials are set."""
        return bool(self.microsoft_app_id)


class ChannelIds(BaseModel):
    """A partnership channel on each platform."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    slack: str | None = None
    teams: str | None = None


class PartnershipFile(BaseModel):
    """The partnership config file's shape."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    name: str = Field(min_length=3, max_length=120)
    policy: str
    directory: str = "directory.yaml"
    reference_prefix: str = Field(default="ESC", pattern=r"^[A-Z]{2,8}$")
    closures: list[date] = Field(default_factory=list)
    digest_time: Annotated[time, BeforeValidator(parse_clock_time)] = time(9, 30)
    retention_days: int = Field(default=6 * 365, ge=30)
    channels: dict[str, ChannelIds] = Field(default_factory=dict)


@dataclass
class Partnership:
    """Everything about one partnership the bot needs, validated together."""

    config: PartnershipFile
    policy: Policy
    directory: Directory
    calendar: WorkingCalendar
    base_dir: Path
    warnings: list[Problem] = field(default_factory=list)

    @property
    def id(self) -> str:
        """The partnership's id."""
        return self.config.id

    def with_people(self, people: list[dict[str, Any]]) -> Partnership:
        """A copy whose directory also knows people remembered from chat."""
        known = [
            Person.model_validate(p) for p in people if p.get("agency") in self.directory.agencies
        ]
        return Partnership(
            self.config,
            self.policy,
            self.directory.with_people(known),
            self.calendar,
            self.base_dir,
            self.warnings,
        )


def load_partnership(path: Path | str) -> Partnership:
    """Load the partnership config, its policy and directory; raise ConfigError listing every problem."""
    path = Path(path)
    located = load_yaml_file(path)
    if not isinstance(located.data, dict):
        raise ConfigError(
            [Problem(str(path), 1, "", "a partnership file must be a mapping of fields")]
        )
    try:
        config = PartnershipFile.model_validate(located.data)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(located, exc)) from exc
    base = path.parent
    problems: list[Problem] = []
    policy: Policy | None = None
    directory: Directory | None = None
    try:
        policy = load_policy(config.policy, base)
    except ConfigError as exc:
        # A policy that cannot be found at all is a mistake in this file's `policy:` line, so
        # it is reported there rather than at the (missing) path the name was taken to mean.
        problems += [
            _relocate(p, located, ("policy",))
            if not p.line and (p.file == "policy" or not Path(p.file).exists())
            else p
            for p in exc.problems
        ]
    directory_path = base / config.directory
    directory_located: Located | None = None
    try:
        directory_located = load_yaml_file(directory_path)
        directory = parse_directory(directory_located)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(problems)
    assert policy is not None and directory is not None
    problems += check_roles(
        directory, policy.roles(), where=directory_located, file=str(directory_path)
    )
    for i, person in enumerate(directory):
        for role in person.roles:
            if role not in policy.roles() and role not in _GENERAL_ROLES:
                assert directory_located is not None
                problems.append(
                    directory_located.problem(
                        ("people", i, "roles"),
                        f"the role '{role}' is not one the policy or the bot uses (check its spelling)",
                    )
                )
    if problems:
        raise ConfigError(problems)
    warnings = []
    for agency in directory.agencies.values():
        if not directory.leads(agency.id):
            assert directory_located is not None
            warnings.append(
                Problem(
                    str(directory_path),
                    directory_located.line_of(("agencies",)),
                    f"agencies.{agency.id}",
                    "no designated safeguarding lead: immediate-risk pings for this agency will reach no one",
                )
            )
    calendar = policy.calendar(config.closures)
    return Partnership(config, policy, directory, calendar, base, warnings)


_GENERAL_ROLES = {
    "practitioner",
    "line_manager",
    "designated_safeguarding_lead",
    "admin",
    "on_call",
    "senior_manager",
    "senior_liaison_officer",
    "partnership_representative",
    "board_chair",
    "panel_chair",
}


def _relocate(problem: Problem, located: Located, loc: tuple[str, ...]) -> Problem:
    return located.problem(loc, problem.message)
