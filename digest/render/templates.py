"""The Jinja2 environment of the email and web templates, and clear errors for broken templates."""

from __future__ import annotations

import textwrap
import traceback
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from digest.errors import ConfigError, DigestError

TEMPLATE_HTML = "email/digest.html"


TEMPLATE_TEXT = "email/digest.txt"


def builtin_templates_dir() -> Path:
    """templates/ inside the installed package, or at the top of a source checkout."""
    packaged = Path(str(resources.files("digest"))) / "templates"
    if (packaged / "email").is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


def make_environment(templates_dir: str | None = None) -> jinja2.Environment:
    """Jinja2 with autoescape for HTML and StrictUndefined; an organisation's own templates
    (templates_dir) win, and any template they lack falls back to the built-in one."""
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir:
        if not Path(templates_dir).is_dir():
            raise ConfigError(f"templates_dir {templates_dir} is not a folder")
        loaders.append(jinja2.FileSystemLoader(templates_dir))
    loaders.append(jinja2.FileSystemLoader(builtin_templates_dir()))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(["html", "htm"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["wrap"] = wrap_text
    return env


def wrap_text(text: str, width: int = 72, indent: str = "") -> str:
    """Wrap each paragraph of plain text near `width` columns."""
    paras = [p for p in text.split("\n\n")]
    return "\n\n".join(
        textwrap.fill(
            " ".join(p.split()),
            width=width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        for p in paras
        if p.strip()
    )


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    hint = "Fix the template; nothing was sent."
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        # Also raised here for an {% include %}d or {% extends %}ed template with a syntax
        # error: those are loaded while rendering, and exc names that file.
        where = exc.filename or exc.name or name
        raise DigestError(f"template {where} line {exc.lineno}: {exc.message}", hint=hint) from None
    except jinja2.TemplateNotFound as exc:
        needed_by = _template_frame(exc)
        within = f" (needed by {needed_by})" if needed_by and exc.name != name else ""
        raise DigestError(f"template {exc.name} not found{within}", hint=hint) from None
    except jinja2.UndefinedError as exc:
        where = _template_frame(exc) or name
        raise DigestError(f"template {where}: {exc.message}", hint=hint) from None
    except Exception as exc:  # any other error raised while rendering: a filter, a bad value
        where = _template_frame(exc) or name
        raise DigestError(f"template {where}: {type(exc).__name__}: {exc}", hint=hint) from None


def _template_frame(exc: BaseException) -> str | None:
    """'FILE line N' of the innermost template frame in exc's traceback (Jinja rewrites the
    traceback so template frames carry the template's file name and line)."""
    found = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if filename.endswith((".html", ".txt", ".htm", ".j2", ".jinja")):
            found = f"{filename} line {lineno}"
    return found
