"""The shared reference files (../shared): the official UK bank holidays and the schemas.

Read from ../shared beside the repository when it is there (the source of truth); otherwise
from the copies in tests/reference/, so a clone on its own (CI) tests against the same data.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def shared(relative: str) -> Path:
    """The path of a shared reference file, e.g. 'reference/uk-bank-holidays.json'."""
    beside = REPO.parent / "shared" / relative
    return beside if beside.exists() else REPO / "tests" / "reference" / relative
