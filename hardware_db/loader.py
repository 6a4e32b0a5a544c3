"""Reading catalogue YAML files and turning every mistake into one clear line.

Shared by hardware_db and workloads (one loader, one error format): a YAML syntax error names the
file and line; a schema error names the file, the entry, the field and what is allowed.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from hardware_db.errors import InvalidSpecError, UnknownIdError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse one YAML file into a mapping; errors name the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidSpecError(f"{path}: cannot read ({e.strerror})") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InvalidSpecError(f"{path}:{where}: invalid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidSpecError(f"{path}: expected a mapping with top-level keys, got {type(data).__name__}")
    return data


def yaml_files(directory: Path) -> list[Path]:
    """Every .yaml/.yml file under `directory`, sorted so that load order (and overrides) is stable."""
    if not directory.is_dir():
        raise InvalidSpecError(f"catalog folder '{directory}' does not exist or is not a folder")
    return sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def _model_at(cls: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The pydantic model class that holds the field at `loc` (for listing the allowed fields)."""
    current: Any = cls
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part or n == part), None)
        if field is None:
            return current
        current = _inner_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    if isinstance(annotation, types.UnionType):
        return None
    return None


def _field_names(cls: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in cls.model_fields.items()]


def _describe_loc(data: Any, loc: tuple[int | str, ...]) -> str:
    """devices[3] (h100-sxm).memory[0].bandwidth — entry IDs make long files navigable."""
    out, node = "", data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                out += f" ({node['id']})"
        else:
            out += ("." if out else "") + str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


def format_validation_error(
    path: Path | str,
    data: Any,
    err: ValidationError,
    cls: type[BaseModel],
    union_tags: tuple[str, ...] = (),
    union_label: str = "kind",
) -> str:
    """One line for the first error (and a count of the others). union_tags: the kinds of a
    discriminated union (workflow stages, fleet workloads), whose tag pydantic puts in the location
    after a list index: dropped there, and an unknown one named with the allowed kinds."""
    # a typo'd field name also makes the real one "missing": report the typo first
    errors = sorted(err.errors(), key=lambda x: x["type"] != "extra_forbidden")
    e = errors[0]
    raw = e["loc"]
    loc = tuple(p for i, p in enumerate(raw) if not (i > 0 and isinstance(raw[i - 1], int) and p in union_tags))
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        parent = None if union_tags else _model_at(cls, loc[:-1])
        allowed = ", ".join(_field_names(parent)) if parent else "see the schema"
        msg = f"unknown field (allowed: {allowed})" if parent else "unknown field"
    elif e["type"] == "missing":
        msg = "required field is missing"
    elif e["type"] == "union_tag_invalid":
        msg = f"unknown {union_label} (allowed: {', '.join(union_tags)})"
    elif "input" in e and e["type"] not in ("model_type", "dict_type") and repr(e["input"]) not in msg:
        msg += f" (got {e['input']!r})"
    more = f" [+{len(errors) - 1} more error(s)]" if len(errors) > 1 else ""
    return f"{path}: {_describe_loc(data, loc) or cls.__name__}: {msg}{more}"


def validate(path: Path | str, data: Any, cls: type[M]) -> M:
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise InvalidSpecError(format_validation_error(path, data, err, cls)) from None


def suggest(name: str, candidates: Iterable[str], limit: int = 5) -> list[str]:
    """Closest names: those containing `name` (in catalogue order), else fuzzy matches."""
    cands = list(candidates)
    low = name.lower()
    hits = [c for c in cands if low in c.lower()]
    return (hits or difflib.get_close_matches(low, cands, n=limit, cutoff=0.6))[:limit]


class Registry(Generic[T], Mapping[str, T]):
    """IDs to entries, in catalogue order; a miss raises UnknownIdError with suggestions."""

    def __init__(self, label: str, entries: dict[str, T], command: str):
        self.label = label  # "hardware", "model", "link", "system"
        self.command = command  # the CLI group that lists them
        self._entries = entries

    def __getitem__(self, key: str) -> T:
        try:
            return self._entries[key]
        except KeyError:
            close = suggest(key, self._entries)
            hint = f" (did you mean: {', '.join(close)}?)" if close else f" (see `planner {self.command} list`)"
            raise UnknownIdError(f"unknown {self.label} '{key}'{hint}") from None

    def __contains__(self, key: object) -> bool:  # Mapping's default would build suggestions on a miss
        return key in self._entries

    def get(self, key: str, default: T | None = None) -> T | None:  # type: ignore[override]
        return self._entries.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
