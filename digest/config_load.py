"""Loading the settings: built-in defaults < digest.toml < DIGEST_* environment < options, with
clear errors naming the setting and where it came from; and the redacted description that
`digest config show` prints (secrets hidden, the signing key described, warnings)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from digest.config import SECRET_KEYS, Settings
from digest.errors import ConfigError
from digest.secret_files import permission_error, read_secret_file

DEFAULT_CONFIG_FILE = "digest.toml"


ENV_PREFIX = "DIGEST_"


def key_warnings(settings: Settings) -> list[str]:
    """What is wrong with the keys that does not stop digest: DIGEST_SECRET_KEY and the key
    file both present and different (so `digest send` and `digest serve` can disagree).
    Raises nothing; a missing or weak key is an error elsewhere."""
    from digest.tokens import key_id

    warnings = []
    if settings.secret_key:
        try:
            in_file = read_secret_file(settings.secret_key_file, "secret_key_file", True)
        except ConfigError:
            in_file = None
        if in_file and in_file != settings.secret_key:
            warnings.append(
                f"DIGEST_SECRET_KEY and {settings.secret_key_file} are both set and differ: "
                f"DIGEST_SECRET_KEY signs (key id {key_id(settings.secret_key.encode())}), "
                f"{settings.secret_key_file} (key id {key_id(in_file.encode())}) is not used. "
                "A `digest serve` or `digest send` run without the variable uses the file, and "
                "the links of one do not work on the other: keep one key, in one place (move "
                "the other to retired_keys_file if mail signed with it is out there)."
            )
    return warnings


def describe_key(settings: Settings) -> str:
    """Which key signs, by its public id, for `config show` (never the key itself)."""
    from digest.tokens import key_id

    try:
        ring = settings.keyring()
    except ConfigError as exc:
        return f"(error: {exc.message})"
    where = "DIGEST_SECRET_KEY" if settings.secret_key else settings.secret_key_file
    retired = f"; {len(ring.retired)} retired" if ring.retired else ""
    return f"key id {key_id(ring.current)} from {where}{retired}"


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    sources: dict[str, str]  # setting key -> where its value came from
    config_path: Path | None


def _field_keys() -> dict[str, str]:
    """Map of digest.toml key -> model field name."""
    return {(f.alias or name): name for name, f in Settings.model_fields.items()}


def load_settings(
    config_path: str | Path | None = None,
    *,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> LoadedSettings:
    """Build the settings. `config_path` (or DIGEST_CONFIG) must exist when given explicitly."""
    env = dict(os.environ if environ is None else environ)
    keys = _field_keys()
    values: dict[str, Any] = {}
    sources: dict[str, str] = dict.fromkeys(keys, "default")

    explicit = config_path or env.get("DIGEST_CONFIG")
    path = Path(explicit) if explicit else Path(DEFAULT_CONFIG_FILE)
    loaded_path: Path | None = None
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at position "
                f"{exc.start})",
                hint="Save it as UTF-8: any text editor can, or `iconv -f windows-1252 -t utf-8`.",
            ) from None
        except PermissionError:
            raise permission_error(path, "the config file") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        for key, value in data.items():
            if key not in keys:
                raise ConfigError(
                    f"{path}: unknown setting {key!r}",
                    hint="`digest config show` lists every setting.",
                )
            if key in SECRET_KEYS:
                raise ConfigError(
                    f"{path}: {key} must not be written in the config file",
                    hint=f"Set {ENV_PREFIX}{key.upper()} or {key}_file instead.",
                )
            values[key] = value
            sources[key] = str(path)
        loaded_path = path
    elif explicit:
        raise ConfigError(
            f"config file {path} does not exist", hint="Run `digest init` to create one."
        )

    for key in keys:
        env_name = ENV_PREFIX + key.upper()
        if env_name in env and env[env_name] != "":
            values[key] = env[env_name]
            sources[key] = f"env {env_name}"

    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
            sources[key] = "command line"

    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        raise _config_error(exc, sources) from None
    return LoadedSettings(settings=settings, sources=sources, config_path=loaded_path)


def _config_error(exc: ValidationError, sources: dict[str, str]) -> ConfigError:
    lines = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:  # a rule about several settings together
            lines.append(msg)
            continue
        key = str(err["loc"][0])
        where = sources.get(key, "")
        lines.append(f"setting {key!r} ({where}): {msg}" if where else f"{key}: {msg}")
    return ConfigError(
        "invalid settings: " + "; ".join(lines),
        hint="Fix digest.toml or the DIGEST_* environment variable named above.",
    )


def describe_settings(loaded: LoadedSettings) -> list[tuple[str, str, str]]:
    """(key, display value, source) for every setting, secrets redacted."""
    from sqlalchemy.engine import make_url

    rows = []
    dumped = loaded.settings.model_dump(by_alias=True)
    for key, value in dumped.items():
        source = loaded.sources.get(key, "default")
        if key in SECRET_KEYS:
            shown = "(set, hidden)" if value else "(not set)"
        elif key == "database_url":
            shown = make_url(value).render_as_string(hide_password=True)
        elif value is None or value == ():
            shown = "(not set)"
        elif isinstance(value, list | tuple):  # review_to, frequencies, topics
            shown = ", ".join(str(v) for v in value)
        else:
            shown = str(value)
        rows.append((key, shown, source))
    key_file = Path(loaded.settings.secret_key_file)
    if not loaded.settings.secret_key and not key_file.exists():
        rows.append(("secret key", "(missing)", str(key_file)))
    else:
        rows.append(("signing key", describe_key(loaded.settings), "derived"))
    return rows
