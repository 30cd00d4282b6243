"""Headless Chromium, to print a record to PDF. Optional: nothing else in the bot needs it.

Finds the program named by CHROMIUM_PATH, else `chromium` (Debian's package),
`chromium-browser`, `google-chrome` or `google-chrome-stable` on the PATH. Standard library only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# A throwaway profile, nothing fetched, no sandbox (CI runs as root, where Chromium's own
# sandbox refuses to start).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

INSTALL_HINT = (
    "PDF export needs Chromium (or Google Chrome) to print the record. Install it with "
    "`sudo apt-get install chromium` (Debian or Ubuntu), or set CHROMIUM_PATH to the browser "
    "program. Meanwhile, `--format html` gives the same record to print from any browser."
)


class ChromiumMissing(RuntimeError):
    """No Chromium or Chrome to run."""


class ChromiumFailed(RuntimeError):
    """Chromium ran but did not produce the file."""


def find() -> str | None:
    """The Chromium program to run, or None."""
    named = os.environ.get("CHROMIUM_PATH")
    if named:
        return named if Path(named).is_file() and os.access(named, os.X_OK) else None
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require() -> str:
    """The Chromium program, or ChromiumMissing saying what to install."""
    found = find()
    if found is None:
        raise ChromiumMissing(INSTALL_HINT)
    return found


def html_to_pdf(page: str, *, program: str | None = None, timeout: float = 120) -> bytes:
    """Print an HTML page to PDF with headless Chromium."""
    program = program or require()
    with tempfile.TemporaryDirectory(prefix="escalation-bot-pdf-") as tmp:
        folder = Path(tmp)
        source = folder / "record.html"
        target = folder / "record.pdf"
        source.write_text(page, encoding="utf-8")
        try:
            done = subprocess.run(
                [
                    program,
                    *FLAGS,
                    f"--user-data-dir={folder / 'profile'}",
                    "--no-pdf-header-footer",
                    f"--print-to-pdf={target}",
                    source.as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ChromiumFailed(f"Chromium could not print the record: {exc}") from exc
        if not target.is_file() or not target.read_bytes().startswith(b"%PDF"):
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise ChromiumFailed(
                f"Chromium exited with status {done.returncode} without writing a PDF. {tail}"
            )
        return target.read_bytes()
