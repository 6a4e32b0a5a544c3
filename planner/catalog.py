"""The merged catalogue: built-in hardware and models plus the user's own YAML files.

User files come from `--catalog DIR` or the PLANNER_CATALOG variable and use the built-in schema.
A user entry whose ID is built in replaces it, and a notice says so (`Catalog.notices`).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hardware_db
import workloads
from hardware_db.errors import InvalidSpecError
from hardware_db.loader import Registry, read_yaml, validate, yaml_files
from hardware_db.schema import CatalogFile, Device, Efficiency, Link, System
from workloads.schema import ModelFile, ModelSpec

HARDWARE_DATA = Path(hardware_db.__file__).resolve().parent / "data"
MODEL_DATA = Path(workloads.__file__).resolve().parent / "data"
_HARDWARE_KEYS = ("devices", "links", "systems", "efficiency")
_TOP_KEYS = (*_HARDWARE_KEYS, "models")
_SINGULAR = {
    "devices": "device",
    "links": "link",
    "systems": "system",
    "efficiency": "efficiency family",
    "models": "model",
}


@dataclass(frozen=True)
class Catalog:
    devices: Registry[Device]
    links: Registry[Link]
    systems: Registry[System]
    models: Registry[ModelSpec]
    efficiency: Registry[Efficiency]  # by device family
    origins: dict[tuple[str, str], Path]  # (section, id) -> file it came from
    notices: tuple[str, ...]

    def device(self, device_id: str) -> Device:
        return self.devices[device_id]

    def model(self, model_id: str) -> ModelSpec:
        return self.models[model_id]

    def system(self, system_id: str) -> System:
        return self.systems[system_id]

    def link(self, link_id: str) -> Link:
        return self.links[link_id]

    def efficiency_for(self, device: Device) -> Efficiency:
        return self.efficiency[device.family]


def _load_file(path: Path) -> dict[str, tuple[Any, ...]]:
    data = read_yaml(path)
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise InvalidSpecError(f"{path}: unknown top-level key '{unknown[0]}' (allowed: {', '.join(_TOP_KEYS)})")
    hw = validate(path, {k: data[k] for k in _HARDWARE_KEYS if k in data}, CatalogFile)
    models = validate(path, {"models": data["models"]} if "models" in data else {}, ModelFile)
    return {
        "devices": hw.devices,
        "links": hw.links,
        "systems": hw.systems,
        "efficiency": hw.efficiency,
        "models": models.models,
    }


def _merge(
    files: list[Path], sections: dict[str, dict[str, Any]], origins: dict[tuple[str, str], Path], notices: list[str]
) -> None:
    for path in files:
        for section, entries in _load_file(path).items():
            for entry in entries:
                key = (section, entry.id)
                previous = origins.get(key)
                if previous is not None:
                    if not _is_builtin(previous) or _is_builtin(path):
                        raise InvalidSpecError(
                            f"{path}: {section} id '{entry.id}' is defined twice (also in {previous})"
                        )
                    notices.append(f"{_SINGULAR[section]} '{entry.id}' from {path} overrides the built-in entry")
                sections[section][entry.id] = entry
                origins[key] = path


def _is_builtin(path: Path) -> bool:
    return HARDWARE_DATA in path.parents or MODEL_DATA in path.parents


def _check_references(cat: Catalog) -> None:
    """Every ID an entry names must exist: a dangling link or device is an error in that file."""

    def need(registry: Registry[Any], ref: str, section: str, owner: str, field: str) -> None:
        if ref not in registry:
            path = cat.origins[(section, owner)]
            raise InvalidSpecError(f"{path}: {section} ({owner}).{field}: unknown {registry.label} '{ref}'")

    for d in cat.devices.values():
        if d.kind in ("gpu", "npu", "tpu", "rdu"):  # CPUs need one only when an estimate runs on them
            need(cat.efficiency, d.family, "devices", d.id, "family")
        for block, field in ((d.scale_up, "scale_up.link"), (d.scale_out, "scale_out.link")):
            if block is not None:
                need(cat.links, block.link, "devices", d.id, field)
    for s in cat.systems.values():
        need(cat.devices, s.device, "systems", s.id, "device")
        need(cat.links, s.scale_up_link, "systems", s.id, "scale_up_link")
        if s.scale_out is not None:
            need(cat.links, s.scale_out.link, "systems", s.id, "scale_out.link")
        if s.host is not None:
            need(cat.devices, s.host.cpu, "systems", s.id, "host.cpu")
        for a in s.attached:
            need(cat.devices, a.device, "systems", s.id, "attached.device")


def user_catalog_dir(catalog_dir: str | Path | None = None) -> Path | None:
    raw = catalog_dir if catalog_dir is not None else os.environ.get("PLANNER_CATALOG") or None
    return Path(raw).expanduser().resolve() if raw else None


@functools.lru_cache(maxsize=1)
def _builtin() -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], Path]]:
    """The shipped files, parsed once per process (user folders are re-read on every load)."""
    sections: dict[str, dict[str, Any]] = {k: {} for k in _TOP_KEYS}
    origins: dict[tuple[str, str], Path] = {}
    _merge(yaml_files(HARDWARE_DATA) + yaml_files(MODEL_DATA), sections, origins, [])
    return sections, origins


def _load(user_dir: Path | None) -> Catalog:
    builtin_sections, builtin_origins = _builtin()
    sections = {k: dict(v) for k, v in builtin_sections.items()}
    origins = dict(builtin_origins)
    notices: list[str] = []
    if user_dir is not None:
        _merge(yaml_files(user_dir), sections, origins, notices)
    cat = Catalog(
        devices=Registry("hardware", sections["devices"], "hardware"),
        links=Registry("link", sections["links"], "hardware links"),
        systems=Registry("system", sections["systems"], "hardware systems"),
        models=Registry("model", sections["models"], "models"),
        efficiency=Registry("efficiency family", sections["efficiency"], "hardware"),
        origins=origins,
        notices=tuple(notices),
    )
    _check_references(cat)
    return cat


def load_catalog(catalog_dir: str | Path | None = None) -> Catalog:
    """The built-in catalogue merged with `catalog_dir` (default: $PLANNER_CATALOG, if set)."""
    return _load(user_catalog_dir(catalog_dir))


def resolve_model(model: str | Path | ModelSpec, catalog: Catalog | str | Path | None = None) -> ModelSpec:
    """A model from an ID, a YAML file, or a Hugging Face config.json path."""
    if isinstance(model, ModelSpec):
        return model
    text = str(model)
    # an ID has no separator and no file suffix (checked on the string: a Path costs more than the lookup)
    looks_like_path = text.endswith((".json", ".yaml", ".yml")) or os.sep in text
    if not looks_like_path:
        return (catalog if isinstance(catalog, Catalog) else load_catalog(catalog)).model(text)
    path = Path(text).expanduser()
    if not path.is_file():
        raise InvalidSpecError(f"model file '{path}' does not exist")
    if path.suffix == ".json":
        from workloads.hf_import import from_hf_config

        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InvalidSpecError(f"{path}: invalid JSON (line {e.lineno}: {e.msg})") from None
        return from_hf_config(config, path)
    data = read_yaml(path)
    if "models" in data:
        models = validate(path, data, ModelFile).models
        if len(models) != 1:
            raise InvalidSpecError(f"{path}: expected one model, found {len(models)}; give its ID instead")
        return models[0]
    return validate(path, data, ModelSpec)
