"""Email templates (render/templates.py): a templates folder overrides one template and falls
back to the built-in one for the other; a broken template names its file and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from digest.errors import DigestError

from .helpers.render import (
    render_golden,
    write_templates,
)


def test_templates_dir_overrides_one_template_and_falls_back_for_the_other(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "digest.txt").write_text(
        "OUR OWN TEXT for {{ name }}\n{% for c, entries in sections %}{% for i in entries %}"
        "{{ i.title }}\n{% endfor %}{% endfor %}Unsubscribe: {{ unsubscribe_url }}\n",
        encoding="utf-8",
    )
    r = render_golden(templates_dir=str(tmp_path))
    assert r.text.startswith("OUR OWN TEXT for Safeguarding News")
    assert "From the editor" in r.html  # the built-in HTML template


def test_broken_template_names_file_and_line(tmp_path: Path) -> None:
    d = write_templates(
        tmp_path, {"digest.html": "<html>\n<body>\n{% for x in sections %}\n</body>\n"}
    )
    with pytest.raises(DigestError) as err:
        render_golden(templates_dir=d)
    assert re.search(
        r"template .*email/digest\.html line \d+: Unexpected end of template", err.value.message
    )
    assert err.value.hint == "Fix the template; nothing was sent."


def test_broken_included_template_names_the_included_file(tmp_path: Path) -> None:
    d = write_templates(tmp_path, {
        "digest.html": "<html>\n<body>\n{% include 'email/part.html' %}\n</body></html>\n",
        "part.html": "<p>\n{{ name }\n</p>\n",
    })  # fmt: skip
    with pytest.raises(DigestError) as err:
        render_golden(templates_dir=d)
    assert re.search(r"template .*email/part\.html line 2: ", err.value.message), err.value.message


def test_undefined_variable_names_file_and_line(tmp_path: Path) -> None:
    d = write_templates(
        tmp_path, {"digest.html": "<html>\n<body>\n<p>{{ no_such_thing.x }}</p>\n</body></html>\n"}
    )
    with pytest.raises(DigestError) as err:
        render_golden(templates_dir=d)
    assert re.search(
        r"email/digest\.html line 3: 'no_such_thing' is undefined", err.value.message
    ), err.value.message


def test_extends_missing_parent_is_reported(tmp_path: Path) -> None:
    d = write_templates(tmp_path, {"digest.html": "{% extends 'email/base.html' %}\n"})
    with pytest.raises(DigestError, match=r"template email/base.html not found"):
        render_golden(templates_dir=d)
