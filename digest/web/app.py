"""`digest serve`: the public web endpoints, made by `create_app(settings)`.

  GET  /subscribe            form;  POST /subscribe      pending + confirmation email
  GET  /confirm/{token}      button; POST /confirm/{token}     -> active
  GET  /unsubscribe/{token}  button; POST /unsubscribe/{token} -> unsubscribed (RFC 8058 one-click)
  GET  /unsubscribe          how to unsubscribe (the link in web versions of issues)
  GET  /preferences/{token}  topics and frequency; POST saves them (web/preferences.py)
  GET  /archive, /archive/N  sent issues and their web version
  GET  /preview              the next send, for staff (preview_token or preview_loopback)
  GET  /review/{token}       an issue (a draft too) from a review or test copy's link
  GET  /healthz              for monitoring

A GET never changes anything: mail scanners and link previewers fetch every link. Routes parse,
call one function of digest.lifecycle or digest.archive, and present a page; every page is plain
HTML that works without JavaScript, with security headers (CSP, no framing, no referrer).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import BackgroundTasks, FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest import lifecycle, preferences
from digest.addresses import is_loopback
from digest.config import Settings
from digest.db import Engine, check_schema, make_engine, session_scope
from digest.errors import DigestError, TooManyRequests, UsageError
from digest.models import utcnow
from digest.secret_files import check_preview_token
from digest.send.confirm import send_confirmations
from digest.send.mailer import Sender, SmtpSender
from digest.send.pacing import Pacer
from digest.tokens import TEST_COPY_TOKEN
from digest.web.archive import archive_page, list_archive, preview_page, review_page
from digest.web.limits import ClientLimiter, client_key
from digest.web.pages import Pages
from digest.web.preferences import add_preferences_routes

log = logging.getLogger("digest.web")

# Our own pages: one stylesheet from this site, no scripts, forms only to this site.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# An issue's web version is the email's HTML: inline styles and remote images, still no scripts.
ISSUE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
DEFAULT_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", PAGE_CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # tokens in our URLs never leak to other sites
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
    (b"cache-control", b"no-store"),
)
PUBLIC_CACHE = "public, max-age=300"
ROBOTS_TXT = (
    "User-agent: *\nDisallow: /confirm/\nDisallow: /unsubscribe/\nDisallow: /preferences/\n"
    "Disallow: /preview\nDisallow: /review/\n"
)
PREVIEW_WINDOW = timedelta(minutes=15)
PREVIEW_FAILURES_PER_CLIENT = 5
PREVIEW_FAILURES_TOTAL = 50
_TOKEN_PATH = re.compile(r"/(unsubscribe|confirm|review|preferences)/[^\s?\"]+")


class SecurityHeaders:
    """Adds DEFAULT_HEADERS to every response that does not set its own value."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in DEFAULT_HEADERS if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RedactTokens(logging.Filter):
    """Keeps the tokens of confirm and unsubscribe links out of the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_PATH.sub(r"/\1/…", a) if isinstance(a, str) else a for a in record.args
            )
        return True


def _basic_password(header: str | None) -> str | None:
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2]


def _direct_from_loopback(request: Request) -> bool:
    # Behind a reverse proxy every request comes from loopback: a forwarded one is not local.
    forwarded = ("forwarded", "x-forwarded-for", "x-real-ip")
    if any(name in request.headers for name in forwarded):
        return False
    return request.client is not None and is_loopback(request.client.host)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    sender_factory: Callable[[], Sender] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    """The web app for `settings`. Needs base_url (links in emails) and the secret key.

    `engine` defaults to one for settings.database_url (disposed at shutdown); confirmation
    emails go through `sender_factory()` (default: the configured SMTP server).
    """
    lifecycle.require_base_url(settings)
    settings.secret_key_bytes()  # a missing key is a startup error, not a 500 per request
    if settings.preview_token is not None:
        check_preview_token(settings.preview_token)
    owns_engine = engine is None
    db = engine if engine is not None else make_engine(settings.database_url)
    new_sender = sender_factory or (lambda: SmtpSender(settings.smtp))
    pacer = Pacer(settings.send_rate, settings.send_rate_per_hour)  # one for every confirmation
    pages = Pages(settings)
    root = pages.root
    stylesheet = pages.stylesheet()
    redact = RedactTokens()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        access_log = logging.getLogger("uvicorn.access")
        access_log.addFilter(redact)
        try:
            yield
        finally:
            access_log.removeFilter(redact)
            if owns_engine:
                db.dispose()

    app = FastAPI(
        title=settings.name, docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.add_middleware(SecurityHeaders)

    def page(template: str, status: int = 200, headers: dict[str, str] | None = None,
             **context: Any) -> HTMLResponse:  # fmt: skip
        return HTMLResponse(pages.render(template, **context), status_code=status, headers=headers)

    def invalid_link() -> HTMLResponse:
        # One page for every bad token: tampered, truncated, expired or for another purpose.
        return page("invalid_link.html", status=404, noindex=True)

    def error_page(
        status: int, title: str, message: str, headers: dict[str, str] | None = None
    ) -> HTMLResponse:
        return page("error.html", status=status, headers=headers, title=title, message=message)

    def deliver_confirmation(job: lifecycle.ConfirmationJob) -> None:
        """After the response, so the answer takes as long whether or not an email goes out."""
        sender = new_sender()
        try:
            results = send_confirmations(db, settings, [job], sender, now=clock(), pacer=pacer)
        except Exception:
            log.exception("could not send a confirmation email")
            return
        finally:
            sender.close()
        for _, result in results:
            if result.outcome != "sent":
                log.warning("a confirmation email was not sent: %s", result.reply)

    # Errors: one place turns them into pages ----------------------------------------------

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error_page(404, "Page not found", "There is no page at this address.")
        if exc.status_code == 405:
            return error_page(405, "Not allowed", "This page cannot be used that way.",
                              headers=dict(exc.headers or {}))  # fmt: skip
        return error_page(exc.status_code, "Request not understood", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, _exc: RequestValidationError) -> Response:
        return error_page(400, "Request not understood", "The form was incomplete or too long.")

    @app.exception_handler(DigestError)
    async def digest_error(_request: Request, exc: DigestError) -> Response:
        if exc.http_status < 500:
            title = "Not found" if exc.http_status == 404 else "Request not understood"
            return error_page(exc.http_status, title, exc.message)
        log.error("%s: %s", type(exc).__name__, exc.message)
        return error_page(exc.http_status, "Service unavailable",
                          "Something went wrong on our side. Please try again later.")  # fmt: skip

    # Subscribe ------------------------------------------------------------------------------

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
    @app.api_route("/subscribe", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def subscribe_form() -> HTMLResponse:
        return page("subscribe.html", email="", person_name="", error=None, topics=topics())

    def topics() -> list[Any]:
        with session_scope(db) as session:
            return preferences.signup_topics(session, settings)

    def client_of(request: Request) -> str:
        return lifecycle.client_marker(settings, request.client.host if request.client else None)

    per_client = ClientLimiter(settings.confirm_limit_per_client, lifecycle.LIMIT_WINDOW, clock)

    def too_many(wait_seconds: float, who: str) -> HTMLResponse:
        minutes = max(1, round(wait_seconds / 60))
        return error_page(
            429, "Too many sign-ups",
            f"There have been too many sign-up requests {who} just now. Please try again in "
            f"{minutes} minute{'s' if minutes != 1 else ''}.",
            headers={"Retry-After": str(max(1, int(wait_seconds)))},
        )  # fmt: skip

    @app.post("/subscribe", response_class=HTMLResponse)
    def subscribe(
        request: Request,
        background: BackgroundTasks,
        email: Annotated[str, Form(max_length=1000)] = "",
        name: Annotated[str, Form(max_length=1000)] = "",
        website: Annotated[str, Form(max_length=1000)] = "",  # a field only robots fill in
        topic: Annotated[list[str] | None, Form(max_length=100)] = None,
    ) -> HTMLResponse:
        # The same page whether the address was new, pending or already active.
        sent = page("subscribe_sent.html", email=email.strip())
        if website:
            return sent
        who = client_key(request.client.host if request.client else None)
        wait = per_client.wait(who)
        if wait is not None:
            log.warning("confirmation limit for one client reached (%s)", who)
            return too_many(wait.total_seconds(), "from your network")
        try:
            with session_scope(db) as session:
                began = utcnow()
                job = lifecycle.request_subscription(
                    session, settings, email=email, name=name, now=clock(),
                    client=client_of(request),
                )  # fmt: skip
                preferences.choose_at_signup(session, settings, email=email,
                                             topic_keys=topic or [], since=began)  # fmt: skip
        except UsageError as exc:
            return page("subscribe.html", status=400, email=email.strip(), person_name=name,
                        error=exc.message, topics=topics())  # fmt: skip
        except TooManyRequests as exc:
            log.warning("confirmation limit for everyone reached: %s", exc.message)
            return too_many(exc.retry_after, "to this newsletter")
        if job is not None:
            per_client.record(who)
            background.add_task(deliver_confirmation, job)
        return sent

    # Confirm --------------------------------------------------------------------------------

    @app.api_route("/confirm", methods=["GET", "HEAD", "POST"], response_class=HTMLResponse)
    def confirm_without_token() -> HTMLResponse:
        return invalid_link()

    @app.api_route("/confirm/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def confirm_form(token: str) -> HTMLResponse:
        with session_scope(db) as session:
            valid = lifecycle.check_confirm_token(session, settings, token, now=clock())
        if not valid:
            return invalid_link()
        return page("confirm.html", token=token, noindex=True)

    @app.post("/confirm/{token}", response_class=HTMLResponse)
    def confirm(request: Request, token: str) -> HTMLResponse:
        with session_scope(db) as session:
            outcome = lifecycle.confirm_subscription(
                session, settings, token, now=clock(), client=client_of(request)
            )
        if outcome is None:
            return invalid_link()
        return page("confirmed.html", already=outcome == lifecycle.ConfirmOutcome.already,
                    noindex=True)  # fmt: skip

    # Unsubscribe ----------------------------------------------------------------------------

    @app.api_route("/unsubscribe", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def unsubscribe_help() -> HTMLResponse:
        return page("unsubscribe_help.html")

    @app.api_route("/unsubscribe/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def unsubscribe_form(token: str) -> HTMLResponse:
        if token == TEST_COPY_TOKEN:  # the link of a test or review copy: it unsubscribes nobody
            return page("test_copy.html", noindex=True)
        if not lifecycle.check_unsubscribe_token(settings, token):
            return invalid_link()
        return page("unsubscribe.html", token=token, noindex=True)

    @app.post("/unsubscribe/{token}", response_class=HTMLResponse)
    def unsubscribe(
        request: Request,
        token: str,
        one_click: Annotated[str | None, Form(alias="List-Unsubscribe", max_length=100)] = None,
    ) -> HTMLResponse:
        # RFC 8058: a mail client POSTs List-Unsubscribe=One-Click, with no cookies and no
        # earlier visit. Act on it alone and answer 200 without a redirect.
        source = "one-click" if one_click == "One-Click" else "web"
        if token == TEST_COPY_TOKEN:
            return page("test_copy.html", noindex=True)  # nothing to change; 200, no redirect
        with session_scope(db) as session:
            outcome = lifecycle.unsubscribe_by_token(
                session, settings, token, source=source, client=client_of(request)
            )
        if outcome is None:
            return invalid_link()
        return page("unsubscribed.html", noindex=True)

    add_preferences_routes(app, settings=settings, db=db, page=page, invalid_link=invalid_link,
                           client_of=client_of)  # fmt: skip

    # Archive and preview --------------------------------------------------------------------

    @app.api_route("/archive", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def archive() -> HTMLResponse:
        with session_scope(db) as session:
            entries = list_archive(session, settings)
        return page("archive.html", issues=entries, headers={"Cache-Control": PUBLIC_CACHE})

    @app.api_route("/archive/{number:int}", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def archive_issue(number: int) -> HTMLResponse:
        with session_scope(db) as session:
            body = archive_page(session, number, root=root)
        return HTMLResponse(
            body, headers={"Content-Security-Policy": ISSUE_CSP, "Cache-Control": PUBLIC_CACHE}
        )

    @app.api_route("/review/{token}", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def review(token: str) -> HTMLResponse:
        with session_scope(db) as session:
            body = review_page(session, settings, token, root=root, now=clock())
        if body is None:
            return invalid_link()
        if not body:
            return page("preview_empty.html", noindex=True)
        return HTMLResponse(body, headers={"Content-Security-Policy": ISSUE_CSP,
                                           "X-Robots-Tag": "noindex"})  # fmt: skip

    # Wrong staff passwords: a few per client, and not many in all, per PREVIEW_WINDOW; then
    # every attempt is refused (429) until the window has passed, even a right one.
    guesses = ClientLimiter(PREVIEW_FAILURES_PER_CLIENT, PREVIEW_WINDOW, clock)
    all_guesses = ClientLimiter(PREVIEW_FAILURES_TOTAL, PREVIEW_WINDOW, clock)

    @app.get("/preview", response_class=HTMLResponse)
    def preview(request: Request) -> HTMLResponse:
        token = settings.preview_token
        password = _basic_password(request.headers.get("authorization"))
        who = client_key(request.client.host if request.client else None)
        if token is not None and password is not None:
            wait = guesses.wait(who) or all_guesses.wait("*")
            if wait is not None:
                log.warning("staff preview: too many wrong passwords (%s)", who)
                return error_page(
                    429, "Too many attempts",
                    "Too many wrong passwords. Please try again later.",
                    headers={"Retry-After": str(max(1, int(wait.total_seconds())))},
                )  # fmt: skip
        right = (token is not None and password is not None
                 and hmac.compare_digest(password.encode(), token.encode()))  # fmt: skip
        if token is not None and password is not None and not right:
            guesses.record(who)
            all_guesses.record("*")
        allowed = right or (settings.preview_loopback and _direct_from_loopback(request))
        if not allowed:
            if token is None:  # preview is off: the page does not exist
                return error_page(404, "Page not found", "There is no page at this address.")
            challenge = {"WWW-Authenticate": 'Basic realm="digest preview"'}
            return error_page(401, "Staff only", "The preview needs the staff password.", challenge)
        with session_scope(db) as session:
            found = preview_page(session, settings, root=root)
        if found is None:
            return page("preview_empty.html", noindex=True)
        return HTMLResponse(found[1], headers={"Content-Security-Policy": ISSUE_CSP})

    # Plumbing -------------------------------------------------------------------------------

    @app.api_route("/healthz", methods=["GET", "HEAD"])
    def healthz() -> JSONResponse:
        try:
            check_schema(db, settings.database_url)
        except Exception as exc:  # any failure means "not healthy"; the log says why
            log.error("health check failed: %s", getattr(exc, "message", exc))
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/static/web.css")
    def css() -> Response:
        return Response(stylesheet, media_type="text/css; charset=utf-8",
                        headers={"Cache-Control": "public, max-age=3600"})  # fmt: skip

    @app.get("/robots.txt")
    def robots() -> PlainTextResponse:
        return PlainTextResponse(ROBOTS_TXT, headers={"Cache-Control": "public, max-age=86400"})

    return app
