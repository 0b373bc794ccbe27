"""Two variants of one issue (issue 7 for readers of Training; for readers of Research and
Procedures) against golden files: only their items, their own subject line and preheader,
the same footer with both links. Update on purpose with DIGEST_UPDATE_GOLDEN=1."""

from __future__ import annotations

import re

from digest.render import PLACEHOLDER_PREFERENCES, PLACEHOLDER_UNSUBSCRIBE

from .helpers.render import golden, render_fixed, render_fixed_variant


def test_two_variants_of_issue_7_golden() -> None:
    training = render_fixed_variant("Training")
    golden("issue7-training.html", training.html)
    golden("issue7-training.txt", training.text)
    others = render_fixed_variant("Research", "Procedures")
    golden("issue7-research-procedures.html", others.html)
    golden("issue7-research-procedures.txt", others.text)


def test_a_variant_holds_only_its_items_and_both_links() -> None:
    whole = render_fixed()
    training = render_fixed_variant("Training")
    assert "Neglect toolkit briefings" in training.text
    assert "Still at Risk" not in training.text + training.html
    assert "children missing from home" not in training.text + training.html
    for body in (training.html, training.text):
        assert body.count(PLACEHOLDER_UNSUBSCRIBE) == 1
        assert body.count(PLACEHOLDER_PREFERENCES) == 1
    # the preheader is the variant's own (the hidden first line of the HTML)
    (preheader,) = re.findall(r'<div class="preheader"[^>]*>([^<]*)', training.html)
    assert preheader.startswith("Neglect toolkit briefings") and "Still at Risk" not in preheader
    assert whole.html != training.html and whole.subject == training.subject
