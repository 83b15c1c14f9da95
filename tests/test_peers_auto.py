"""Peer requests accepted by approve.peers only: exact domains, listed emails."""

from __future__ import annotations

import json

import pytest
import yaml

from syft_bg_app.approval.rules import peer_auto_accept_reason

DOMAINS = ["openmined.org", "kaggle.com"]
EMAILS = ["carol@partner.example"]


@pytest.mark.parametrize(
    "email, why",
    [
        ("alice@openmined.org", "domain openmined.org"),
        # DNS names have no case: the same domain, deliberately accepted.
        ("alice@OpenMined.org", "domain openmined.org"),
        ("ALICE@OPENMINED.ORG", "domain openmined.org"),
        ("carol@partner.example", "approved_emails"),
        ("Carol@Partner.Example", "approved_emails"),
        # A plus or percent in the local part still belongs to openmined.org's mailboxes.
        ("alice+syft@openmined.org", "domain openmined.org"),
    ],
)
def test_exact_domains_and_listed_emails_are_accepted(email, why):
    ok, reason = peer_auto_accept_reason(email, DOMAINS, EMAILS)
    assert ok, reason
    assert why in reason


@pytest.mark.parametrize(
    "email, why",
    [
        ("bob@evil-openmined.org", "not in approve.peers.approved_domains"),
        ("bob@openmined.org.evil.com", "not in approve.peers.approved_domains"),
        ("bob@sub.openmined.org", "not in approve.peers.approved_domains"),
        ("bob@openmined.orgx", "not in approve.peers.approved_domains"),
        ("bob@openmined.org.", "ends with a dot"),
        ("bob@OpenMined.org.", "ends with a dot"),
        ("bob@evil.com@openmined.org", "exactly one @"),
        ('"bob@evil.com"@openmined.org', "exactly one @"),
        ("bob.openmined.org", "exactly one @"),
        (" bob@openmined.org", "whitespace"),
        ("bob@openmined.org ", "whitespace"),
        ("bob@openmined.org\n", "whitespace"),
        ("bob @openmined.org", "whitespace"),
        ("bob@open mined.org", "whitespace"),
        ("bob@openmined.org\t", "whitespace"),
        # Cyrillic i, fullwidth letters and the Kelvin sign (which lower() turns into k).
        ("bob@openm\u0456ned.org", "non-ASCII"),
        ("bob@\uff4f\uff50\uff45\uff4emined.org", "non-ASCII"),
        ("bob@\u212aaggle.com", "non-ASCII"),
        ("bob\uff20openmined.org", "non-ASCII"),
        ("@openmined.org", "not a plain email address"),
        ("bob@.openmined.org", "not a plain email address"),
        ("bob@openmined..org", "not a plain email address"),
        ("carol@partner.example.evil.com", "not in approve.peers.approved_domains"),
        ("xcarol@partner.example", "not in approve.peers.approved_domains"),
    ],
)
def test_look_alike_and_malformed_addresses_are_not_accepted(email, why):
    ok, reason = peer_auto_accept_reason(email, DOMAINS, EMAILS)
    assert not ok
    assert why in reason


def test_nothing_is_accepted_without_approve_peers():
    ok, _ = peer_auto_accept_reason("alice@openmined.org", [], [])
    assert not ok


@pytest.mark.parametrize("domain", ["openmined.org.", "@openmined.org", "*.openmined.org"])
def test_a_domain_that_is_not_a_plain_domain_is_a_config_error(app, domain):
    app.set_config(approve={"peers": {"approved_domains": [domain], "approved_emails": []}})
    result = app.cli("run", "--once")
    assert result.returncode == 2
    assert "approve.peers.approved_domains[0]" in result.stderr


def _accepted(app) -> dict[str, str]:
    state = json.loads(app.home.state_file.read_text())
    return {email: record["status"] for email, record in state["peers"].items()}


def test_a_pass_accepts_exact_domains_only_and_creates_their_folders(app):
    app.set_config(
        approve={"peers": {"approved_domains": ["openmined.org"], "approved_emails": []}}
    )
    for email in (
        "alice@openmined.org",
        "bob@evil-openmined.org",
        "eve@openmined.org.evil.com",
        "mallory@openm\u0456ned.org",
    ):
        app.request_peer(email)

    assert app.run_pass().exit_code == 0

    assert _accepted(app) == {
        "alice@openmined.org": "accepted",
        "bob@evil-openmined.org": "requested",
        "eve@openmined.org.evil.com": "requested",
        "mallory@openm\u0456ned.org": "requested",
    }
    inbox = app.datasite.inbox
    review = app.datasite.review
    perms = yaml.safe_load((inbox / "alice@openmined.org" / "syft.pub.yaml").read_text())
    [inbox_rule] = perms["rules"]
    assert inbox_rule["access"]["write"] == ["alice@openmined.org"]
    assert inbox_rule["access"]["read"] == []
    perms = yaml.safe_load((review / "alice@openmined.org" / "syft.pub.yaml").read_text())
    [review_rule] = perms["rules"]
    assert review_rule["access"]["read"] == ["alice@openmined.org"]
    assert review_rule["access"]["write"] == []
    assert not (inbox / "bob@evil-openmined.org").exists()
    assert not (inbox / "eve@openmined.org.evil.com").exists()
    assert not (inbox / "mallory@openm\u0456ned.org").exists()


def test_each_request_left_for_the_owner_is_audited_once(app):
    app.set_config(
        approve={"peers": {"approved_domains": ["openmined.org"], "approved_emails": []}}
    )
    app.request_peer("bob@evil-openmined.org")
    for _ in range(3):
        app.run_pass()

    out = app.cli("audit", "bob@evil-openmined.org", check=True).stdout
    assert out.count("left for the data owner") == 1
    assert "evil-openmined.org is not in approve.peers.approved_domains" in out


def test_a_listed_email_is_accepted_and_the_decision_audited(app):
    app.set_config(
        approve={"peers": {"approved_domains": [], "approved_emails": ["carol@partner.example"]}}
    )
    app.request_peer("carol@partner.example")
    app.request_peer("dave@partner.example")
    app.run_pass()

    assert _accepted(app) == {
        "carol@partner.example": "accepted",
        "dave@partner.example": "requested",
    }
    out = app.cli("audit", "carol@partner.example", check=True).stdout
    assert "accepted  (auto)" in out and "approved_emails" in out


def test_a_job_rule_never_accepts_a_peer(app):
    app.set_config(
        approve={
            "auto_approvals": [
                {
                    "name": "for-dave",
                    "peers": ["dave@partner.example"],
                    "files": {"run.sh": "sha256:" + "a" * 64},
                }
            ]
        }
    )
    app.request_peer("dave@partner.example")
    app.run_pass()
    app.run_pass()

    assert _accepted(app) == {"dave@partner.example": "requested"}
    assert not (app.datasite.inbox / "dave@partner.example").exists()


def test_accepting_by_hand_creates_the_same_folders(app):
    app.request_peer("frank@elsewhere.example")
    app.run_pass()
    app.cli("peers", "accept", "frank@elsewhere.example", check=True)

    perms = yaml.safe_load(
        (app.datasite.inbox / "frank@elsewhere.example" / "syft.pub.yaml").read_text()
    )
    assert perms["rules"][0]["access"]["write"] == ["frank@elsewhere.example"]
    perms = yaml.safe_load(
        (app.datasite.review / "frank@elsewhere.example" / "syft.pub.yaml").read_text()
    )
    assert perms["rules"][0]["access"]["read"] == ["frank@elsewhere.example"]
