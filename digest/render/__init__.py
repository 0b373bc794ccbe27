"""Stages 4 and 5 of the flow: render an issue (Jinja2) and inline its CSS (premailer), once.

  issue.py      render_issue(): the HTML and text of an issue, the same for every recipient
  templates.py  the Jinja2 environment (an organisation's templates_dir first), template errors
  fit.py        the size guard that keeps the HTML under Gmail's clipping limit
  inline.py     premailer, network off
  views.py      the preview's side-by-side page and its local server

This module stays light (no Jinja2): the send path only needs the placeholder below.
"""

PLACEHOLDER_UNSUBSCRIBE = "DIGESTxUNSUBSCRIBExURLx7q"
PLACEHOLDER_PREFERENCES = "DIGESTxPREFERENCESxURLx7q"  # "Choose what you receive" (issue #15)


def fill_links(body: str, unsubscribe_url: str, preferences_url: str) -> str:
    """A rendered body with both per-recipient links put in (already escaped for HTML)."""
    return body.replace(PLACEHOLDER_UNSUBSCRIBE, unsubscribe_url).replace(
        PLACEHOLDER_PREFERENCES, preferences_url
    )
