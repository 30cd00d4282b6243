"""Safe YAML loading that remembers where every value came from.

Config and policy files are written by people: errors must name the file, line and field.
Imports only the standard library and PyYAML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_BYTES = 5 * 1024 * 1024
# A billion-laughs file expands a few aliases into millions of nodes; no honest
# directory or policy comes anywhere near this many values.
MAX_NODES = 200_000
# Real files nest a few levels deep; thousands of `[` (or an alias chain) would otherwise end
# in a RecursionError, in PyYAML's composer or in our own builder, instead of a located error.
MAX_DEPTH = 64

Loc = tuple[str | int, ...]


class ConfigError(ValueError):
    """A configuration problem located in a file, at a line, in a field."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Problem:
    """One located configuration problem."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


@dataclass
class Located:
    """Plain data parsed from YAML, with the line of every path in it."""

    file: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int | None:
        """The line of the value at `loc`, or of its nearest ancestor."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)

    def problem(self, loc: Loc, message: str) -> Problem:
        """A problem at `loc` in this file."""
        return Problem(self.file, self.line_of(loc), format_loc(loc), message)


def format_loc(loc: Loc) -> str:
    """`people[3].manager` from ("people", 3, "manager")."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_yaml_file(path: Path | str) -> Located:
    """Read and parse a YAML file, refusing oversized and alias-bomb files."""
    path = Path(path)
    name = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError(
            [Problem(name, None, "", f"cannot read the file ({exc.strerror})")]
        ) from exc
    if size > MAX_FILE_BYTES:
        raise ConfigError(
            [
                Problem(
                    name, None, "", f"the file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}"
                )
            ]
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(name, None, "", "the file is not UTF-8 text")]) from exc
    return load_yaml_text(text, name)


def load_yaml_text(text: str, name: str = "<string>") -> Located:
    """Parse YAML text into plain data with line numbers."""
    if len(text.encode("utf-8")) > MAX_FILE_BYTES:
        raise ConfigError([Problem(name, None, "", f"the text is over {MAX_FILE_BYTES:,} bytes")])
    if _flow_depth(text) > MAX_DEPTH:
        # PyYAML's scanner slows quadratically with `[`/`{` nesting (seconds for a few
        # thousand): refused before it starts. Brackets in honest text are few and balanced.
        raise ConfigError(
            [Problem(name, None, "", f"the file is nested too deeply (the most is {MAX_DEPTH})")]
        )
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError as exc:
        raise ConfigError(
            [Problem(name, None, "", f"the file is nested too deeply (the most is {MAX_DEPTH})")]
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(name, line, "", f"not valid YAML: {reason}")]) from exc
    located = Located(name, None)
    if node is None:
        return located
    builder = _Builder(located)
    located.data = builder.build(node, ())
    return located


_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def _flow_depth(text: str) -> int:
    """How deep `[` and `{` nest, up to just past MAX_DEPTH (quotes ignored: an upper bound)."""
    depth = deepest = 0
    for char in _NOT_BRACKETS.sub("", text):
        depth += 1 if char in "[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > MAX_DEPTH:
                break
    return deepest


class _Builder:
    """Turns a composed YAML node graph into plain data, counting every node."""

    def __init__(self, located: Located) -> None:
        self.located = located
        self.count = 0
        self.constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.count += 1
        if len(loc) > MAX_DEPTH:
            raise ConfigError(
                [self.located.problem(loc[:8], f"nested more than {MAX_DEPTH} levels deep")]
            )
        if self.count > MAX_NODES:
            raise ConfigError(
                [
                    self.located.problem(
                        loc, f"the file expands to over {MAX_NODES:,} values (an alias bomb?)"
                    )
                ]
            )
        self.located.lines.setdefault(loc, node.start_mark.line + 1)
        if (
            isinstance(node, yaml.MappingNode | yaml.SequenceNode)
            and node.tag not in _COLLECTION_TAGS
        ):
            raise self._unreadable(node, loc, f"the tag {node.tag!r} is not allowed here")
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise ConfigError(
                        [self.located.problem(loc, "YAML merge keys (<<) are not supported")]
                    )
                if not isinstance(key_node, yaml.ScalarNode):
                    raise ConfigError([self.located.problem(loc, "keys must be plain text")])
                key = self._scalar(key_node, loc)
                if not isinstance(key, str | int):
                    raise ConfigError([self.located.problem(loc, "keys must be plain text")])
                key = str(key)
                if key in out:
                    raise ConfigError(
                        [
                            Problem(
                                self.located.file,
                                key_node.start_mark.line + 1,
                                format_loc((*loc, key)),
                                "this key appears twice",
                            )
                        ]
                    )
                self.located.lines[(*loc, key)] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, (*loc, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, loc)

    def _scalar(self, node: yaml.Node, loc: Loc) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            # A tag the safe loader will not build (`!thing`, `!!python/...`, bad `!!binary`).
            raise self._unreadable(node, loc, getattr(exc, "problem", None) or str(exc)) from exc
        except ValueError as exc:
            # Looks like a date, a time or a number but is not one (`2026-13-45`, `!!int x`).
            raise self._unreadable(node, loc, str(exc)) from exc

    def _unreadable(self, node: yaml.Node, loc: Loc, reason: str) -> ConfigError:
        line = node.start_mark.line + 1
        return ConfigError(
            [
                Problem(
                    self.located.file, line, format_loc(loc), f"this value cannot be read: {reason}"
                )
            ]
        )


# Tags PyYAML gives plain mappings and lists; any other on one (`!!python/object/apply:...`,
# `!custom`) would be silently dropped by building them ourselves, so it is refused instead.
_COLLECTION_TAGS = {"tag:yaml.org,2002:map": "mapping", "tag:yaml.org,2002:seq": "list"}


def problems_from_validation(located: Located, exc: Any, prefix: Loc = ()) -> list[Problem]:
    """Translate a pydantic ValidationError into located problems."""
    problems = []
    for err in exc.errors():
        loc = (*prefix, *(part for part in err["loc"] if not _is_union_tag(part)))
        message = err["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            message = "unknown field (check its spelling)"
        elif err["type"] == "missing":
            message = "this field is required"
        problems.append(located.problem(loc, message))
    return problems


def _is_union_tag(part: Any) -> bool:
    # pydantic inserts the union member or function name in the location path;
    # people think in the file's keys, so those are dropped.
    return isinstance(part, str) and (part.startswith("function-") or "[" in part)


def parse_clock_time(value: Any) -> Any:
    """Accept "17:00" however YAML read it (PyYAML reads unquoted 17:00 as 1020 minutes)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return f"{value // 60:02d}:{value % 60:02d}"
    return value
