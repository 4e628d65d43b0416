"""Reading agreement files: YAML to validated models, keeping the line of every value.

PyYAML nodes carry their position, so every key and list item is mapped to its line and any
problem (a pydantic error location or a later semantic check) can name the line to fix.

Every YAML file the broker reads (agreements, the config, the SSDA903 specification) is parsed
by `NoAliasLoader`: aliases (`*name`, and so `<<: *name` merges) are refused, because a few
hundred bytes of nested aliases expand to gigabytes ("billion laughs"); files are at most
`MAX_YAML_BYTES` and nest at most as deep as the parser's stack allows, each limit a clear error
naming the file and line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from broker.agreements.exceptions import Problem
from broker.agreements.model import Agreement

Loc = tuple[str | int, ...]
SUFFIXES = (".yaml", ".yml")
MAX_YAML_BYTES = 1024 * 1024


class YamlLimitError(yaml.MarkedYAMLError):
    """A YAML text over one of the loader's limits (alias, size, depth); `problem` says which."""


class NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases where the composer would follow them."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise YamlLimitError(
                None,
                None,
                f"uses an alias (*{event.anchor}); aliases and merge keys are not allowed: "
                "write the values out in full",
                event.start_mark,
            )
        node: yaml.Node | None = super().compose_node(parent, index)
        return node


def load_yaml(text: str) -> Any:
    """One YAML document through `NoAliasLoader` and the size and depth limits."""
    return parse_yaml(text)[0]


@dataclass(frozen=True)
class SourcedAgreement:
    """An agreement together with the file it came from and the line of each of its values."""

    agreement: Agreement
    file: Path
    lines: dict[Loc, int] = field(repr=False)

    def line(self, *loc: str | int) -> int:
        """The line of the value at `loc`, or of its nearest enclosing value."""
        return line_of(self.lines, loc)


def line_of(lines: dict[Loc, int], loc: Loc) -> int:
    """The line of `loc` in `lines`, falling back to the closest parent location."""
    for end in range(len(loc), -1, -1):
        found = lines.get(loc[:end])
        if found is not None:
            return found
    return 1


def agreement_files(directory: Path) -> list[Path]:
    """The agreement files in `directory` (not recursive), in a stable order."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in SUFFIXES)


def read_dir(directory: Path) -> tuple[list[SourcedAgreement], list[Problem]]:
    """Read every agreement file in `directory`; return those that parsed and the problems."""
    if not directory.is_dir():
        problem = Problem(directory, None, "agreements directory not found",
                          "give a directory of .yaml files")
        return [], [problem]
    files = agreement_files(directory)
    if not files:
        problem = Problem(directory, None, "no agreement files (*.yaml) found",
                          "add one file per agreement")
        return [], [problem]
    sourced: list[SourcedAgreement] = []
    problems: list[Problem] = []
    for path in files:
        one, found = read_file(path)
        problems.extend(found)
        if one is not None:
            sourced.append(one)
    return sourced, problems


def read_file(path: Path) -> tuple[SourcedAgreement | None, list[Problem]]:
    """Parse and validate one agreement file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(path, None, f"cannot read file ({exc.__class__.__name__})",
                              "make it a readable UTF-8 text file")]
    return read_text(text, path)


def read_text(text: str, path: Path) -> tuple[SourcedAgreement | None, list[Problem]]:
    """Parse and validate one agreement document (a file's text, or a registry record's);
    `path` names it in problems."""
    try:
        data, lines, duplicates = parse_yaml(text)
    except YamlLimitError as exc:
        mark = exc.problem_mark
        return None, [Problem(path, mark.line + 1 if mark is not None else None,
                              f"refused: {exc.problem}", "simplify the file (docs/bad-input.md)")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = exc.problem or exc.context or "invalid YAML"
        return None, [Problem(path, line, f"not valid YAML: {reason}",
                              "correct the YAML syntax (indentation, quoting, colons)")]
    except yaml.YAMLError as exc:
        return None, [Problem(path, None, f"not valid YAML: {exc.__class__.__name__}",
                              "correct the YAML syntax")]
    except RecursionError:  # the line walk of a composed document
        return None, [Problem(path, None, "not valid YAML: nested too deeply",
                              "flatten the structure")]
    problems = [
        Problem(path, line, f"key `{key}` appears twice", "keep one of them")
        for key, line in duplicates
    ]
    if not isinstance(data, dict):
        return None, [*problems, Problem(path, 1, "the file is not a mapping of keys to values",
                                         "start from the example in docs/agreements.md")]
    try:
        agreement = Agreement.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems_from(exc, path, lines))
        return None, problems
    return SourcedAgreement(agreement, path, lines), problems


def parse_yaml(text: str) -> tuple[Any, dict[Loc, int], list[tuple[str, int]]]:
    """Parse one YAML document: (data, line of every key and item, duplicated keys with lines).

    Raises `yaml.YAMLError` (with a mark naming the line) when the text is not valid YAML, and
    `YamlLimitError` for an alias, a text over `MAX_YAML_BYTES` or nesting too deep.
    """
    if len(text) > MAX_YAML_BYTES:
        raise YamlLimitError(
            None, None, f"file of {len(text)} characters is over the limit of {MAX_YAML_BYTES}"
        )
    loader = NoAliasLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}, []
        data = loader.construct_document(node)
    except RecursionError:
        raise YamlLimitError(
            None, None, "nested too deeply: flatten the structure", loader.get_mark()
        ) from None
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    duplicates: list[tuple[str, int]] = []
    for loc, line, duplicate in _walk(node, ()):
        if duplicate:
            duplicates.append((".".join(map(str, loc)), line))
        lines.setdefault(loc, line)
    return data, lines, duplicates


def _walk(node: yaml.Node, loc: Loc) -> Iterator[tuple[Loc, int, bool]]:
    yield loc, node.start_mark.line + 1, False
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*loc, key)
            if key in seen:
                yield child, key_node.start_mark.line + 1, True
                continue
            seen.add(key)
            yield child, key_node.start_mark.line + 1, False
            yield from ((c, n, d) for c, n, d in _walk(value_node, child) if c != child)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _walk(item, (*loc, index))


def _problems_from(exc: ValidationError, path: Path, lines: dict[Loc, int]) -> list[Problem]:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        loc: Loc = tuple(error["loc"])
        # Union members add their type name to the location; it means nothing in the file.
        loc = tuple(part for part in loc if not (isinstance(part, str) and part in _TYPE_TAGS))
        where = ".".join(map(str, loc)) or "file"
        line = line_of(lines, loc)
        kind = error["type"]
        if kind == "missing":
            message, fix = f"`{where}` is required", f"add `{loc[-1]}`"
        elif kind == "extra_forbidden":
            message = f"`{where}` is not a known key"
            fix = f"remove `{loc[-1]}` or correct its spelling (see docs/agreements.md)"
        else:
            message = f"`{where}`: {error['msg']}"
            fix = _FIXES.get(str(loc[-1]) if loc else "", _DEFAULT_FIX)
        problems.append(Problem(path, line, message, fix))
    return problems


_DEFAULT_FIX = "correct the value (see docs/agreements.md)"
_TYPE_TAGS = {"date", "datetime", "list[...]", "int", "str", "literal[...]"}

_FIXES = {
    "id": "use lower-case letters, digits, dots and dashes, e.g. `dsa.council-police.missing`",
    "version": "use a whole number from 1; a changed agreement is a new version in a new file",
    "valid_from": "write a date (2026-04-01) or a time with a zone (2026-04-01T00:00:00Z)",
    "valid_until": "write a date (2027-03-31, in force all that day) or a time with a zone",
    "retention": "write an ISO 8601 period, e.g. P6Y, P18M or P90D",
    "transform": (
        "use one of age_band, age_years, birth_year, postcode_district, date_only, pseudonym"
    ),
    "name": "start with a letter; use lower-case letters, digits, `_` (and `-` in rule names)",
    "field": "use the field's name as in the event schema (lower-case and underscores)",
    "email": "write a role mailbox such as dpo@westminster.gov.uk",
}
