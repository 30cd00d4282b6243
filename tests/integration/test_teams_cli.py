"""The Teams admin commands: `teams-package` builds the zip to upload, and `check-config` names
who still has to open the bot once in Teams."""

from __future__ import annotations

import json
import zipfile
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import EXAMPLE_CONFIG, REPO

from bot.adapters.teams.package import color_icon, fill, outline_icon, png_size
from bot.cli import main
from store import conversation_refs as refs
from store import db
from store.repository import Store

APP_ID = "5f0c1f7e-6b1d-4c2a-9e3f-00000000e5c1"
TEAMS_DIR = REPO / "teams"


def test_the_manifest_template_has_the_bot_its_commands_and_placeholders() -> None:
    manifest = json.loads((TEAMS_DIR / "manifest.json").read_text())
    (bot,) = manifest["bots"]
    assert bot["botId"] == manifest["id"] == "{{MICROSOFT_APP_ID}}"
    assert set(bot["scopes"]) == {"personal", "team"}
    titles = [c["title"] for c in bot["commandLists"][0]["commands"]]
    assert titles[0] == "escalate" and "escalate help" in titles
    assert all(len(t) <= 32 for t in titles)
    assert len(manifest["name"]["short"]) <= 30 and len(manifest["description"]["short"]) <= 80
    assert png_size((TEAMS_DIR / "color.png").read_bytes()) == (192, 192)
    assert png_size((TEAMS_DIR / "outline.png").read_bytes()) == (32, 32)


def test_teams_package_builds_the_zip_a_teams_admin_uploads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "app.zip"
    status = main(
        [
            "teams-package",
            "--app-id",
            APP_ID.upper(),
            "--website",
            "https://safeguarding.example.org/escalation",
            "--manifest",
            str(TEAMS_DIR / "manifest.json"),
            "--out",
            str(out),
            "--config",
            str(EXAMPLE_CONFIG),
        ]
    )
    assert status == 0, capsys.readouterr().err
    assert "Upload" in capsys.readouterr().out
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(archive.read("manifest.json"))
        assert png_size(archive.read("color.png")) == (192, 192)
        assert png_size(archive.read("outline.png")) == (32, 32)
    assert manifest["id"] == manifest["bots"][0]["botId"] == APP_ID
    assert (
        manifest["developer"]["privacyUrl"] == "https://safeguarding.example.org/escalation/privacy"
    )
    assert len(manifest["developer"]["name"]) <= 32
    assert "{{" not in json.dumps(manifest)


@pytest.mark.parametrize(
    ("app_id", "website", "problem"),
    [
        ("not-a-guid", "https://safeguarding.example.org", "not a GUID"),
        (APP_ID, "http://safeguarding.example.org", "https://"),
    ],
)
def test_teams_package_refuses_what_teams_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], app_id: str, website: str, problem: str
) -> None:
    out = tmp_path / "app.zip"
    argv = ["teams-package", "--app-id", app_id, "--website", website, "--out", str(out)]
    argv += ["--manifest", str(TEAMS_DIR / "manifest.json"), "--developer", "A Partnership"]
    assert main(argv) == 1
    assert problem in capsys.readouterr().err
    assert not out.exists()


def test_check_config_lists_who_still_has_to_open_the_bot_in_teams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/check.db"
    db.upgrade(url)
    store = Store(url)
    with store.unit() as session:
        refs.save_reference(
            session,
            platform="teams",
            key="user:aad-amara",
            reference={"conversation": {"id": "a:personal-29:amara"}},
            person_id="amara.okafor",
            now=datetime(2026, 11, 26, 10, tzinfo=UTC),
        )
    store.dispose()
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("MICROSOFT_APP_ID", APP_ID)
    monkeypatch.setenv("MICROSOFT_APP_PASSWORD", "not-a-real-secret")
    monkeypatch.setenv("MICROSOFT_APP_TENANT_ID", "0d7a9e52-3c41-4b8e-a1f2-00000000b0a7")
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    main(["check-config", "--config", str(EXAMPLE_CONFIG)])
    out = capsys.readouterr().out
    assert "still to open the bot once" in out
    listed = out.split("still to open the bot once", 1)[1]
    assert "Ben Carter (Royal Wolverhampton NHS Trust)" in listed
    assert "Amara Okafor" not in listed
    # The example config has no Teams channel ids yet: check-config says so.
    assert "no Teams channel for 'disputes'" in out


def test_every_placeholder_must_have_a_value_and_values_stay_valid_json() -> None:
    with pytest.raises(ValueError, match="WEBSITE_URL"):
        fill('{"a": "{{WEBSITE_URL}}"}', {})
    assert fill('{"name": "{{DEVELOPER_NAME}}"}', {"DEVELOPER_NAME": 'The "Q" Trust'}) == {
        "name": 'The "Q" Trust'
    }


def test_the_icons_are_drawn_as_teams_asks() -> None:
    colour, outline = color_icon(), outline_icon()
    assert png_size(colour) == (192, 192) and png_size(outline) == (32, 32)
    pixels = zlib.decompress(outline[outline.index(b"IDAT") + 4 : outline.index(b"IEND") - 8])
    rows = [pixels[i * (1 + 32 * 4) + 1 : (i + 1) * (1 + 32 * 4)] for i in range(32)]
    alphas = {row[x * 4 + 3] for row in rows for x in range(32)}
    colours = {tuple(row[x * 4 : x * 4 + 3]) for row in rows for x in range(32) if row[x * 4 + 3]}
    assert alphas == {0, 255}  # a transparent background
    assert colours == {(255, 255, 255)}  # white only
