"""Configuration from text: YAML files and `--set key=value` overrides turned into a typed `Config` (every key
and value checked, with the key named in the error), and the resolved config written back as `config.yaml`."""

from __future__ import annotations

import copy
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from artextract.config import Config, _field_types, config_to_dict
from artextract.core.atomic import write_text
from artextract.core.progress import log
from artextract.errors import ConfigError

# Keys that were renamed: the old name still works (from a file, `--set` or a flag) and says what to write now.
RENAMED_KEYS = {"prepare.image_size": "prepare.cache_size"}


def default_value(key: str) -> Any:
    """The default of `section.key` (for help texts)."""
    section, name = key.split(".", 1)
    value = getattr(getattr(Config(), section), name)
    return ",".join(value) if isinstance(value, list) else value


def changed_keys(before: Config, after: Config, sections: tuple[str, ...]) -> dict[str, tuple[Any, Any]]:
    """`section.key` -> (old, new) for every key of `sections` whose value differs."""
    old, new = config_to_dict(before), config_to_dict(after)
    return {f"{section}.{key}": (old[section][key], new[section][key]) for section in sections
            for key in old[section] if old[section][key] != new[section][key]}


def _all_keys(config_cls: type = Config) -> list[str]:
    keys = []
    for name, section_type in _field_types(config_cls).items():
        keys.extend(f"{name}.{key}" for key in _field_types(section_type))
    return keys


def _unknown_key(key: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(valid)}"
    return ConfigError(f"unknown config key '{key}'{hint}")


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert `value` (from YAML or a `--set` string) to `annotation`, or raise a ConfigError naming `key`."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(f"config key '{key}' must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in {"none", "null", ""}):
            return None
        return coerce(value, args[0], key)
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        items = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ConfigError(f"config key '{key}' expects a list, got {value!r}")
        return [coerce(item, item_type, key) for item in items]
    try:
        if annotation is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in _TRUE | _FALSE:
                return str(value).lower() in _TRUE
            raise ValueError
        if annotation is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(str(value).replace("_", "")) if isinstance(value, str) else int(value)
        if annotation is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if annotation is str:
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        name = getattr(annotation, "__name__", str(annotation))
        raise ConfigError(f"config key '{key}' expects {name}, got {value!r}") from None
    raise TypeError(f"unsupported config annotation {annotation!r} for {key}")


def current_key(key: str, source: str = "config") -> str:
    """`key`, or the name it has now if it was renamed (saying so once per use)."""
    if key in RENAMED_KEYS:
        log.warning("%s: config key '%s' is now '%s'; the old name still works but will go: rename it",
                    source, key, RENAMED_KEYS[key])
        return RENAMED_KEYS[key]
    return key


def key_type(key: str) -> Any:
    """The type annotation of `section.key`, or a ConfigError that names the closest valid key."""
    section_name, _, name = key.partition(".")
    valid = _all_keys()
    if not name or section_name not in _field_types(Config):
        raise _unknown_key(key, valid)
    types_ = _field_types(_field_types(Config)[section_name])
    if name not in types_:
        raise _unknown_key(key, valid)
    return types_[name]


def _set(config: Config, key: str, value: Any, source: str = "config") -> None:
    key = current_key(key, source)
    annotation = key_type(key)  # an unknown key is refused before anything is set
    section_name, _, name = key.partition(".")
    setattr(getattr(config, section_name), name, coerce(value, annotation, key))


def apply_mapping(config: Config, mapping: dict[str, Any], source: str = "config") -> Config:
    """Apply a nested `{section: {key: value}}` mapping, as read from YAML."""
    if not isinstance(mapping, dict):
        kind = type(mapping).__name__
        raise ConfigError(f"{source}: expected a mapping of sections (synth:, prepare:, ...), got {kind}")
    sections = list(_field_types(Config))
    for section_name, values in mapping.items():
        if section_name not in sections:
            raise _unknown_key(str(section_name), sections)
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{section_name}' must be a mapping of keys to values")
        for name, value in values.items():
            _set(config, f"{section_name}.{name}", value, source)
    return config


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Apply `section.key=value` strings, as given to `--set`."""
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep:
            raise ConfigError(f"--set expects section.key=value, got {override!r}")
        _set(config, key.strip(), value.strip(), "--set")
    return config


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None,
                base: Config | None = None, values: dict[str, Any] | None = None) -> Config:
    """Defaults (or `base`), then the YAML file (if any), then `--set` overrides, then typed `values`
    (`section.key` -> value, as a command's flags give them), in that order; every key and value checked."""
    config = copy.deepcopy(base) if base is not None else Config()
    if path is not None:
        path = Path(path)
        try:
            mapping = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as err:
            raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
        except UnicodeDecodeError as err:
            raise ConfigError(f"config file {path} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
                              f"{err.start}); save it as UTF-8") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
        apply_mapping(config, mapping, source=str(path))
    apply_overrides(config, overrides or [])
    for key, value in (values or {}).items():
        _set(config, key, value, "flag")
    return config.validate()


def config_yaml(config: Config, sections: tuple[str, ...] | None = None) -> str:
    """The resolved config (only `sections`, if given) as YAML."""
    data = config_to_dict(config)
    if sections is not None:
        data = {name: data[name] for name in sections}
    return yaml.safe_dump(data, sort_keys=False)


def write_config(config: Config, path: str | os.PathLike[str], sections: tuple[str, ...] | None = None) -> None:
    """Write the resolved config (only `sections`, if given) as YAML, atomically."""
    write_text(path, config_yaml(config, sections))
