"""`digest subscribers add/list/unsubscribe/remove/confirm` (subscribers.py): addresses
normalised and checked, duplicates refused case-insensitively, erasure leaves a suppression."""

from __future__ import annotations

import csv
import json

from .helpers.db import count


def test_add_and_list(cli, env) -> None:
    r = cli("subscribers", "add", "  Ana.Jones@Example.ORG ", "--name", "Ana Jones")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "Added Ana.Jones@example.org (active)."
    r = cli("subscribers", "add", "bo@example.org", "--status", "pending")
    assert "Added bo@example.org (pending)." in r.stdout
    r = cli("subscribers", "list")
    assert r.exit_code == 0
    assert "Ana.Jones@example.org" in r.stdout and "Ana Jones" in r.stdout
    assert "2 subscribers" in r.stdout
    r = cli("subscribers", "list", "--status", "pending", "--format", "json")
    assert [row["email"] for row in json.loads(r.stdout)] == ["bo@example.org"]
    r = cli("subscribers", "list", "--format", "csv")
    rows = list(csv.DictReader(r.stdout.splitlines()))
    assert [row["status"] for row in rows] == ["active", "pending"]


def test_duplicate_is_refused_case_insensitively(cli, env) -> None:
    assert cli("subscribers", "add", "ana@example.org").exit_code == 0
    r = cli("subscribers", "add", "ANA@EXAMPLE.ORG")
    assert r.exit_code == 2
    assert "Error: ana@example.org is already subscribed" in r.stderr.replace("ANA", "ana")
    assert count(env, "SELECT count(*) FROM subscriber") == 1


def test_invalid_address_is_refused(cli, env) -> None:
    for bad in ("not-an-address", "ana@", "ana@example.org\r\nBcc: x@y.org", ""):
        r = cli("subscribers", "add", bad)
        assert r.exit_code == 2, bad
        assert "Error: invalid address" in r.stderr
        assert "Traceback" not in r.output
    assert count(env, "SELECT count(*) FROM subscriber") == 0


def test_bad_status_is_a_usage_error(cli, env) -> None:
    r = cli("subscribers", "add", "ana@example.org", "--status", "bounced")
    assert r.exit_code == 2
    assert "'bounced' is not one of" in r.output


def test_unsubscribe_and_remove(cli, env) -> None:
    cli("subscribers", "add", "ana@example.org", "--name", "Ana")
    r = cli("subscribers", "unsubscribe", "ANA@example.org")
    assert r.exit_code == 0 and "Unsubscribed ANA@example.org." in r.stdout
    r = cli("subscribers", "unsubscribe", "ana@example.org")
    assert "already unsubscribed" in r.stdout
    assert count(env, "SELECT count(*) FROM subscriber_event") == 2  # added, unsubscribed
    r = cli("subscribers", "remove", "ana@example.org", "--yes")
    assert r.exit_code == 0 and "Removed ana@example.org." in r.stdout
    assert count(env, "SELECT count(*) FROM subscriber") == 0
    assert count(env, "SELECT count(*) FROM subscriber_event") == 0  # personal history erased
    # a later add or import cannot silently bring them back
    r = cli("subscribers", "add", "ana@example.org")
    assert r.exit_code == 2 and "suppressed" in r.stderr


def test_unknown_subscriber(cli, env) -> None:
    for cmd in (
        ("unsubscribe", "x@example.org"),
        ("remove", "x@example.org", "--yes"),
        ("confirm", "x@example.org"),
    ):
        r = cli("subscribers", *cmd)
        assert r.exit_code == 1
        assert "Error: no subscriber 'x@example.org'" in r.stderr


def test_confirm_pending(cli, env) -> None:
    cli("subscribers", "add", "ana@example.org", "--status", "pending")
    r = cli("subscribers", "confirm", "ana@example.org")
    assert r.exit_code == 0 and "Confirmed ana@example.org." in r.stdout
    r = cli("subscribers", "confirm", "ana@example.org")
    assert r.exit_code == 2 and "is active, not pending" in r.stderr
