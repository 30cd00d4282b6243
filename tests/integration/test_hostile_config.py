"""Abusive partnership files: an alias bomb, a 50 MB file, a circle of line managers, nesting a
thousand deep, impossible time zones and deadlines. `escalation-bot check-config` (and so the
bot at start-up) refuses each at load with a plain, located error, quickly, and no traceback."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from bot.app import build_core
from bot.cli import main
from bot.config import Settings, load_partnership
from bot.yamlsource import MAX_FILE_BYTES, ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
WOLVERHAMPTON = REPO / "bot" / "policies" / "wolverhampton.yaml"

BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
agencies: *i
people: *i
"""


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example partnership whose policy is a file of its own (policy.yaml)."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/unused.db")
    for name in ("SLACK_BOT_TOKEN", "MICROSOFT_APP_ID"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "cfg"
    shutil.copytree(EXAMPLES, folder)
    shutil.copy(WOLVERHAMPTON, folder / "policy.yaml")
    config = folder / "partnership.yaml"
    config.write_text(config.read_text().replace("policy: wolverhampton", "policy: policy.yaml"))
    monkeypatch.setenv("ESCALATION_CONFIG", str(config))
    return folder


def refused(capsys: pytest.CaptureFixture[str], cfg: Path) -> str:
    """Run check-config; it must fail within a few seconds with a plain list of problems."""
    started = time.perf_counter()
    status = main(["check-config"])
    elapsed = time.perf_counter() - started
    out, err = capsys.readouterr()
    assert status != 0 and out == ""
    assert err.splitlines()[0] == "The configuration has problems:", err
    assert "Traceback" not in err and "Error:" not in err
    assert elapsed < 5, f"check-config took {elapsed:.1f} s"
    return err


def test_the_example_partnership_with_its_own_policy_file_passes(
    capsys: pytest.CaptureFixture[str], cfg: Path
) -> None:
    assert main(["check-config"]) == 0
    assert capsys.readouterr().out.startswith("OK:")


@pytest.mark.parametrize("file", ["directory.yaml", "policy.yaml"])
def test_a_billion_laughs_file_is_refused_as_an_alias_bomb(
    capsys: pytest.CaptureFixture[str], cfg: Path, file: str
) -> None:
    (cfg / file).write_text(BILLION_LAUGHS)
    err = refused(capsys, cfg)
    assert f"{cfg / file}:" in err and "alias bomb" in err


@pytest.mark.parametrize("file", ["directory.yaml", "policy.yaml"])
def test_a_50_mb_file_is_refused_by_its_size_before_it_is_read(
    capsys: pytest.CaptureFixture[str], cfg: Path, file: str
) -> None:
    with (cfg / file).open("r+b") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: 50 MB on paper, nothing written
    err = refused(capsys, cfg)
    assert f"{cfg / file}: the file is 52,428,800 bytes; the limit is {MAX_FILE_BYTES:,}" in err


def test_the_bot_itself_refuses_to_start_on_such_a_file(cfg: Path, tmp_path: Path) -> None:
    (cfg / "directory.yaml").write_text(BILLION_LAUGHS)
    with pytest.raises(ConfigError, match="alias bomb"):
        load_partnership(cfg / "partnership.yaml")
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/bot.db",
        escalation_config=str(cfg / "partnership.yaml"),
    )
    with pytest.raises(ConfigError):
        build_core(settings)
    assert not (tmp_path / "bot.db").exists(), "refused before the database is touched"


def test_a_file_nested_thousands_deep_is_refused(
    capsys: pytest.CaptureFixture[str], cfg: Path
) -> None:
    (cfg / "directory.yaml").write_text("agencies: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested too deeply" in refused(capsys, cfg)


def test_a_chain_of_thousands_of_aliases_is_refused(
    capsys: pytest.CaptureFixture[str], cfg: Path
) -> None:
    chain = "a0: &a0 [x]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 3000))
    (cfg / "policy.yaml").write_text(chain)
    assert "levels deep" in refused(capsys, cfg)


def circle(cfg: Path, managers: dict[str, str]) -> None:
    text = (cfg / "directory.yaml").read_text()
    for person, manager in managers.items():
        start = text.index(f"{{id: {person},")
        end = text.index("}", start)
        entry = text[start:end]
        if "manager:" in entry:
            old = entry[entry.index("manager:") :].split(",")[0]
            entry = entry.replace(old, f"manager: {manager}")
        else:
            entry += f", manager: {manager}"
        text = text[:start] + entry + text[end:]
    (cfg / "directory.yaml").write_text(text)


@pytest.mark.parametrize(
    "managers, loop",
    [
        (
            {
                "tom.hadley": "grace.mensah",
                "grace.mensah": "olivia.brandt",
                "olivia.brandt": "tom.hadley",
            },
            "tom.hadley -> grace.mensah -> olivia.brandt -> tom.hadley",
        ),
        (
            {"ben.carter": "rosa.delgado", "rosa.delgado": "ben.carter"},
            "ben.carter -> rosa.delgado -> ben.carter",
        ),
    ],
    ids=["three managers", "two people"],
)
def test_a_circle_in_line_management_is_refused_naming_it(
    capsys: pytest.CaptureFixture[str], cfg: Path, managers: dict[str, str], loop: str
) -> None:
    circle(cfg, managers)
    err = refused(capsys, cfg)
    assert "line management goes round in a circle" in err and loop in err
    assert f"{cfg / 'directory.yaml'}:" in err


def test_someone_who_is_their_own_manager_is_refused(
    capsys: pytest.CaptureFixture[str], cfg: Path
) -> None:
    circle(cfg, {"priya.nair": "priya.nair"})
    assert "a person cannot be their own manager" in refused(capsys, cfg)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Europe", "x" * 300, "../../etc/passwd"])
def test_a_policy_time_zone_that_does_not_exist_is_refused_at_its_line(
    capsys: pytest.CaptureFixture[str], cfg: Path, zone: str
) -> None:
    policy = cfg / "policy.yaml"
    policy.write_text(policy.read_text().replace("timezone: Europe/London", f'timezone: "{zone}"'))
    err = refused(capsys, cfg)
    line = next(
        i for i, text in enumerate(policy.read_text().splitlines(), 1) if "timezone:" in text
    )
    assert f"{policy}:{line}: timezone: '{zone[:40]}" in err and "not a time zone" in err


@pytest.mark.parametrize(
    "deadline", ["999999999 working days", "100000000 hours", "5000 working days"]
)
def test_a_deadline_of_centuries_is_refused_at_its_line(
    capsys: pytest.CaptureFixture[str], cfg: Path, deadline: str
) -> None:
    policy = cfg / "policy.yaml"
    text = policy.read_text().replace("deadline: 3 working days", f"deadline: {deadline}", 1)
    policy.write_text(text)
    err = refused(capsys, cfg)
    assert "stages[0].steps[1].deadline" in err and "the most is 1,000" in err
