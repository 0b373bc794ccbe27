"""The preferences page of `digest serve` (issue #15): the "Choose what you receive" link of
every digest.

  GET  /preferences/{token}   the subscriber's topics (checkboxes), frequency, unsubscribe
  POST /preferences/{token}   saves them and shows what changed (consent log, source web)

A GET changes nothing; a tampered or foreign token shows the invalid-link page (404) and
changes nobody. Plain HTML form: labels, fieldsets, works with the keyboard and without
JavaScript.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse

from digest import preferences
from digest.config import Settings
from digest.db import Engine, session_scope
from digest.errors import UsageError


def add_preferences_routes(
    app: FastAPI,
    *,
    settings: Settings,
    db: Engine,
    page: Callable[..., HTMLResponse],
    invalid_link: Callable[[], HTMLResponse],
    client_of: Callable[[Request], str],
) -> None:
    """Add the preferences routes to the app of `create_app`."""

    @app.api_route("/preferences/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def preferences_form(token: str) -> HTMLResponse:
        with session_scope(db) as session:
            prefs = preferences.preferences_page(session, settings, token)
        if prefs is None:
            return invalid_link()
        return page("preferences.html", token=token, prefs=prefs, changes=None, error=None,
                    noindex=True)  # fmt: skip

    @app.post("/preferences/{token}", response_class=HTMLResponse)
    def preferences_save(
        request: Request,
        token: str,
        scope: Annotated[str, Form(max_length=10)] = "all",
        topic: Annotated[list[str] | None, Form(max_length=100)] = None,
        frequency: Annotated[str | None, Form(max_length=16)] = None,
    ) -> HTMLResponse:
        shown: dict[str, Any] = {"token": token, "noindex": True}
        try:
            with session_scope(db) as session:
                saved = preferences.save_preferences(
                    session, settings, token, every=scope != "some", topic_keys=topic or [],
                    frequency=frequency, client=client_of(request),
                )  # fmt: skip
        except UsageError as exc:
            with session_scope(db) as session:
                prefs = preferences.preferences_page(session, settings, token)
            if prefs is None:
                return invalid_link()
            return page("preferences.html", status=400, prefs=prefs, changes=None,
                        error=exc.message, **shown)  # fmt: skip
        if saved is None:
            return invalid_link()
        changes, prefs = saved
        return page("preferences.html", prefs=prefs, changes=changes, error=None, **shown)
