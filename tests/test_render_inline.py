"""Inlining CSS (render/inline.py): premailer without loading `requests`, which it imports
only to fetch external style sheets (off here). Each check runs in a fresh interpreter, where
nothing else has imported `requests` yet."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_inlining_does_not_load_requests() -> None:
    out = _run(
        """
        import sys
        from digest.render.inline import inline_css
        html = inline_css(
            "<html><head><style>p{color:red} @media (max-width:600px){p{color:blue}}</style>"
            "</head><body><p>x</p></body></html>"
        )
        assert '<p style="color:red">x</p>' in html, html
        assert "@media" in html, html
        print(sorted(m for m in ("requests", "urllib3", "chardet") if m in sys.modules
                     and type(sys.modules[m]).__name__ == "module"))
        """
    )
    assert out == "[]"


def test_requests_still_works_for_anyone_who_uses_it() -> None:
    """The stand-in gives way to the real module at its first use, `import requests`,
    `from requests import …` and submodules included."""
    out = _run(
        """
        import sys
        from digest.render.inline import inline_css
        inline_css("<html><body><p>x</p></body></html>")
        import requests
        stand_in = requests
        from requests import Session
        import requests.exceptions
        real = sys.modules["requests"]
        assert type(real).__name__ == "module" and real is not stand_in
        assert Session is real.Session and stand_in.Session is real.Session
        assert requests.exceptions.HTTPError is real.exceptions.HTTPError
        print(real.__version__ == stand_in.__version__)
        """
    )
    assert out == "True"
