"""Stage 5: CSS moved into style attributes by premailer, once per issue."""

from __future__ import annotations

import importlib
import logging
import sys
import types
from typing import Any


def inline_css(html: str) -> str:
    """Move CSS into style attributes (mail clients drop <style>), keeping @media rules.

    Network access is off: a template cannot make rendering fetch anything.
    """
    return str(
        _premailer()(
            html,
            allow_network=False,
            allow_loading_external_files=False,
            strip_important=False,
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
            remove_classes=False,
        ).transform()
    )


def _premailer() -> Any:
    """premailer's Premailer class, imported only when an issue is rendered (lxml and cssutils
    are heavy). premailer imports `requests` to fetch external style sheets, which is off here,
    and that import (urllib3's URL patterns, chardet) cost as much as premailer's own: so
    `requests` is a stand-in until something uses one of its attributes."""
    if "requests" not in sys.modules:
        sys.modules["requests"] = _Deferred("requests")
    from premailer import Premailer

    return Premailer


class _Deferred(types.ModuleType):
    """Stands in for a module in sys.modules: the first attribute asked of it imports the
    real one (which takes its place in sys.modules) and is answered from it, as is every
    later one."""

    def __getattr__(self, name: str) -> Any:
        module = self.__dict__.get("_module")
        if module is None:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            module = importlib.import_module(self.__name__)
            self.__dict__["_module"] = module
        return getattr(module, name)
