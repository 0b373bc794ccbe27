"""The preview's side-by-side page (desktop and phone widths) and a small local server for it.

`digest preview --serve` writes the preview files, then serves that folder on 127.0.0.1 only:
views.html shows digest.html in a 600 px and a 375 px frame next to each other.
"""

from __future__ import annotations

import functools
import html
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

VIEWS = "views.html"
WIDTHS = ((640, "Desktop, 600 px column"), (375, "Phone, 375 px"))

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Preview: {title}</title>
<style>
  body {{ margin: 0; padding: 16px; background: #d7dde4;
         font-family: Arial, Helvetica, sans-serif; }}
  h1 {{ font-size: 18px; margin: 0 0 4px 0; }}
  p {{ margin: 0 0 12px 0; font-size: 14px; }}
  .views {{ display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }}
  figure {{ margin: 0; }}
  figcaption {{ font-size: 13px; margin: 0 0 6px 0; color: #333; }}
  iframe {{ border: 1px solid #8a96a3; background: #fff; height: 85vh; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>The same HTML at two widths. <a href="digest.html">Open it alone</a> &middot;
<a href="digest.txt">plain text</a> &middot; <a href="digest.eml">the message</a></p>
<div class="views">
{frames}
</div>
</body>
</html>
"""


def write_views_page(folder: Path, title: str) -> Path:
    """views.html next to digest.html: the digest in a desktop and a phone-sized frame."""
    frames = "\n".join(
        f"<figure><figcaption>{html.escape(label)}</figcaption>"
        f'<iframe src="digest.html" width="{width}" title="{html.escape(label)}"></iframe></figure>'
        for width, label in WIDTHS
    )
    path = folder / VIEWS
    path.write_text(_PAGE.format(title=html.escape(title), frames=frames), encoding="utf-8")
    return path


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass


def serve_folder(folder: Path, port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server for `folder` on 127.0.0.1 (port 0: any free port), not yet serving.

    Loopback only: the preview is for the person at this machine.
    """
    handler = functools.partial(_QuietHandler, directory=str(folder))
    return ThreadingHTTPServer(("127.0.0.1", port), handler)


def serve_in_background(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="preview-server", daemon=True)
    thread.start()
    return thread
