"""Server-rendered pages of `digest serve`, from templates/web/ (an organisation's own
templates_dir wins, as for the email). Plain HTML forms: every page works without JavaScript."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from digest.config import Settings
from digest.render.templates import make_environment

STYLESHEET = "web/web.css"


class Pages:
    """Renders the pages with the newsletter's branding; one per app."""

    def __init__(self, settings: Settings) -> None:
        self.env = make_environment(settings.templates_dir)
        base = settings.base_url or ""
        # Links are made under base_url's path, so the site may live at https://host/news.
        self.root = urlsplit(base).path.rstrip("/")
        self.common: dict[str, Any] = {
            "name": settings.name,
            "organisation": settings.organisation,
            "postal_address_lines": [
                ln.strip() for ln in settings.postal_address.splitlines() if ln.strip()
            ],
            "root": self.root,
            "unsubscribe_mailto": settings.unsubscribe_mailto,
            "confirm_days": settings.confirm_token_days,
            "noindex": False,
        }

    def render(self, template: str, **context: Any) -> str:
        return self.env.get_template(f"web/{template}").render({**self.common, **context})

    def stylesheet(self) -> str:
        loader = self.env.loader
        assert loader is not None
        source, _, _ = loader.get_source(self.env, STYLESHEET)
        return source
