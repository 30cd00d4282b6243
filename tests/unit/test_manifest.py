"""manifest.yml is a valid Slack app manifest and declares what the Slack adapter relies on.

Validated offline against Slack's published schema (shared/schemas/slack-manifest/): the
top-level "all versions" schema $refs the versioned files by their GitHub URLs, which a
`referencing.Registry` maps to the local copies (see shared/schemas/SOURCES.md).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import referencing.jsonschema
import yaml
from shared_files import shared

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "manifest.yml"
SCHEMAS = shared("schemas/slack-manifest")
REMOTE = "https://raw.githubusercontent.com/slackapi/manifest-schema/v0.5.0/schemas/"
PUBLIC_URL = "https://bot.example.org/slack/events"


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    registry: referencing.Registry[Any] = referencing.Registry()
    for name in ("manifest.schema.1.0.0.json", "manifest.schema.2.0.0.json"):
        resource = referencing.Resource.from_contents(
            _load_json(SCHEMAS / name), default_specification=referencing.jsonschema.DRAFT7
        )
        registry = registry.with_resource(REMOTE + name, resource)
    schema = _load_json(SCHEMAS / "manifest.schema.json")
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, registry=registry)


@pytest.fixture
def manifest() -> dict[str, Any]:
    loaded = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _errors(validator: jsonschema.Draft7Validator, instance: Any) -> list[str]:
    return [e.message for e in validator.iter_errors(instance)]


def test_manifest_validates_against_slacks_schema(
    validator: jsonschema.Draft7Validator, manifest: dict[str, Any]
) -> None:
    assert _errors(validator, manifest) == []


def test_the_remote_refs_resolve_locally_and_select_the_version_1_schema(
    validator: jsonschema.Draft7Validator, manifest: dict[str, Any]
) -> None:
    # The v1 schema forbids unknown top-level keys; v2 is a different shape. A stray key must
    # be caught through the $ref, proving the registry was used rather than skipped.
    broken = {**manifest, "not_a_manifest_key": True}
    assert not validator.is_valid(broken)
    assert manifest["_metadata"]["major_version"] == 1


def test_the_escalate_command(manifest: dict[str, Any]) -> None:
    commands = {c["command"]: c for c in manifest["features"]["slash_commands"]}
    assert set(commands) == {"/escalate"}
    escalate = commands["/escalate"]
    assert escalate["description"]
    assert escalate["usage_hint"] == "[list | status REF | timeline | digest | help]"
    assert escalate["url"] == PUBLIC_URL
    assert escalate["should_escape"] is True


def test_bot_scopes(manifest: dict[str, Any]) -> None:
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert len(scopes) == len(set(scopes)), "a scope is listed twice"
    required = {
        "commands",
        "chat:write",
        "im:write",
        "users:read",
        "users:read.email",
        # The bot reads its own recent messages to avoid duplicates after a crash.
        "channels:history",
        "groups:history",
        "im:history",
    }
    assert required <= set(scopes)
    assert "user" not in manifest["oauth_config"]["scopes"], "the bot needs no user token"


def test_bot_user_and_app_home(manifest: dict[str, Any]) -> None:
    features = manifest["features"]
    assert features["bot_user"]["display_name"]
    assert features["bot_user"]["always_online"] is True
    assert features["app_home"]["home_tab_enabled"] is True
    assert features["app_home"]["messages_tab_enabled"] is True


def test_interactivity_and_events(manifest: dict[str, Any]) -> None:
    settings = manifest["settings"]
    assert settings["interactivity"] == {"is_enabled": True, "request_url": PUBLIC_URL}
    events = settings["event_subscriptions"]
    assert events["request_url"] == PUBLIC_URL
    assert "app_home_opened" in events["bot_events"]


def test_settings_default_to_http_mode(manifest: dict[str, Any]) -> None:
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is False
    assert settings["token_rotation_enabled"] is False
    assert settings["org_deploy_enabled"] is False


def test_the_socket_mode_switch_is_explained() -> None:
    text = MANIFEST.read_text(encoding="utf-8")
    assert "Socket Mode" in text
    assert "connections:write" in text


def _missing_display_name(m: dict[str, Any]) -> None:
    del m["display_information"]["name"]


def _missing_display_information(m: dict[str, Any]) -> None:
    del m["display_information"]


def _scope_not_a_string(m: dict[str, Any]) -> None:
    m["oauth_config"]["scopes"]["bot"].append(42)


def _scopes_not_a_list(m: dict[str, Any]) -> None:
    m["oauth_config"]["scopes"]["bot"] = "commands,chat:write"


def _command_without_slash(m: dict[str, Any]) -> None:
    m["features"]["slash_commands"][0]["command"] = "escalate"


def _interactivity_without_is_enabled(m: dict[str, Any]) -> None:
    del m["settings"]["interactivity"]["is_enabled"]


def _name_too_long(m: dict[str, Any]) -> None:
    m["display_information"]["name"] = "E" * 36


def _socket_mode_as_string(m: dict[str, Any]) -> None:
    m["settings"]["socket_mode_enabled"] = "false"


@pytest.mark.parametrize(
    "breakage",
    [
        _missing_display_name,
        _missing_display_information,
        _scope_not_a_string,
        _scopes_not_a_list,
        _command_without_slash,
        _interactivity_without_is_enabled,
        _name_too_long,
        _socket_mode_as_string,
    ],
)
def test_a_broken_copy_is_rejected(
    validator: jsonschema.Draft7Validator, manifest: dict[str, Any], breakage: Any
) -> None:
    broken = copy.deepcopy(manifest)
    breakage(broken)
    assert not validator.is_valid(broken)
    assert validator.is_valid(manifest)
