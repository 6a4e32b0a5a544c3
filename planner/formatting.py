"""Rendering results for people (tables in human units) and programs (JSON/CSV in SI units).

Units are read off the key names, which carry them (`_bytes`, `_bytes_per_s`, `_s`, `_w`, ...), so
every command prints the same quantity the same way.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from hardware_db.units import human

FORMATS = ("table", "json", "csv")


def human_value(key: str, value: Any) -> str:
    """`3.35e12` under `..._bandwidth_bytes_per_s` -> '3.35 TB/s'. Non-numbers pass through."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    k = key.lower()
    if k.endswith("usd_per_hour"):
        return f"${value:,.2f}/h"
    if k.endswith("usd_per_million_tokens"):
        return f"${value:,.3f}/M tokens"
    if k.endswith("_usd"):
        return f"${value:,.0f}"
    if k.endswith("_flops_per_byte"):
        return f"{value:,.0f} FLOP/B"
    if k.endswith("_bytes_per_s"):
        return human(value, "bytes_per_s")
    if "_bytes" in k or k == "bytes" or k.endswith(".bytes"):
        return human(value, "bytes")
    if k.endswith("_flops_per_token"):
        return human(value, "flops")
    if k.endswith("_hz"):
        return f"{value / 1e9:.3g} GHz"
    if k.endswith("_flops") or k.endswith("_flops_per_s") or ".peak_dense." in k:
        return human(value, "flops_per_s")
    if k.endswith("_per_s") or k.endswith("_per_s_per_device"):  # rates of things: tokens/s, requests/s
        return f"{value:,.4g}/s"
    if k in ("flops",) or k.endswith(".flops"):
        return human(value, "flops")
    if k.endswith("_w"):
        return human(value, "watts")
    if k.endswith("_s"):
        return human(value, "seconds")
    if k.startswith("params"):
        return human(value, "count").replace(" ", "")
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _json_default(o: Any) -> Any:
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=_json_default)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys (lists of mappings get their index) for CSV and tables."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, Mapping) for x in v):
            for i, x in enumerate(v):
                label = x.get("tier") or x.get("provider") or x.get("id") or i
                out.update(flatten(x, f"{key}.{label}."))
        elif isinstance(v, (list, tuple)):
            out[key] = ", ".join(str(x) for x in v)
        else:
            out[key] = v
    return out


def rows_to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    fields: list[str] = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _json_default(v) if hasattr(v, "isoformat") else v for k, v in r.items()})
    return buf.getvalue()


def _console() -> Any:
    """Rich console: the terminal's width on a TTY; wide, plain lines when piped (no folding, no colour)."""
    import sys

    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    return Console(width=240, color_system=None)


def render_rows(rows: Sequence[Mapping[str, Any]], fmt: str, title: str | None = None) -> str | None:
    """A list of records: a table (human units), a JSON array, or CSV. Returns None after printing a table."""
    if fmt == "json":
        return to_json(list(rows))
    if fmt == "csv":
        return rows_to_csv(rows)
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_lines=False)
    columns = list(rows[0]) if rows else []
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        # Text, not a markup string: a value such as "inference ttft [gpt-oss sweep]" is not a style
        table.add_row(*(Text(str(human_value(c, r.get(c)))) for c in columns))
    _console().print(table)
    return None


def render_record(record: Mapping[str, Any], fmt: str, title: str | None = None) -> str | None:
    """One nested record: a field/value table, JSON as is, or CSV of dotted field,value pairs."""
    if fmt == "json":
        return to_json(record)
    flat = flatten(record)
    if fmt == "csv":
        return rows_to_csv([{"field": k, "value": v} for k, v in flat.items()])
    from rich.table import Table

    table = Table(title=title, show_header=True)
    table.add_column("field", no_wrap=True)
    table.add_column("value", overflow="fold")
    for k, v in flat.items():
        table.add_row(k, human_value(k, v))
    _console().print(table)
    return None
