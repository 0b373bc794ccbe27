"""Stage 5: CSS moved into style attributes by premailer, once per issue."""

from __future__ import annotations

import logging


def inline_css(html: str) -> str:
    """Move CSS into style attributes (mail clients drop <style>), keeping @media rules.

    Network access is off: a template cannot make rendering fetch anything.
    """
    from premailer import Premailer  # heavy (lxml, cssutils): only when an issue is rendered

    return str(
        Premailer(
            html,
            allow_network=False,
            allow_loading_external_files=False,
            strip_important=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
            remove_classes=False,
        ).transform()
    )
