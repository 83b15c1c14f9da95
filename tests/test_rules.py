"""The rule model: which rules are live, whom they apply to, what equal means."""

from __future__ import annotations

import hashlib

from syft_bg_app.approval.rules import Rule, RuleIndex, match

ALICE = "alice@uni.edu"


def sha(data: str) -> str:
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


FILES = {"run.sh": "bash code/a.sh\n", "code/a.sh": "echo a\n"}
LIVE = Rule("live", files={p: sha(c) for p, c in FILES.items()})


def hash_of(contents: dict[str, str]):
    calls: list[str] = []

    def hashed(rel: str) -> str:
        calls.append(rel)
        return sha(contents[rel])

    return hashed, calls


def test_only_rules_that_pin_run_sh_by_content_are_live():
    assert LIVE.inert_reason() is None
    no_run = Rule("x", files={"code/a.sh": sha("echo a\n")})
    by_name = Rule("y", files={"code/a.sh": sha("a")}, name_only=frozenset({"run.sh"}))
    both = Rule("z", files={"run.sh": sha("r"), "code/a": sha("a")}, name_only={"code/a"})
    off = Rule("w", files={"run.sh": sha("r")}, enabled=False)
    assert "does not pin run.sh" in no_run.inert_reason()
    assert "by name only" in by_name.inert_reason()
    assert "both by content and by name only" in both.inert_reason()
    assert "disabled" in off.inert_reason()
    assert RuleIndex([LIVE, no_run, by_name, both, off]).live == [LIVE]


def test_peer_lists():
    everyone = LIVE
    named = Rule("n", peers=(ALICE,), files=LIVE.files)
    assert everyone.applies_to("bob@co.com", accepted_peer=True)
    assert not everyone.applies_to("bob@co.com", accepted_peer=False)
    # Naming someone in a rule does not make them a peer: no rule applies to a non-peer.
    assert not named.applies_to(ALICE, accepted_peer=False)
    assert named.applies_to("Alice@Uni.edu", accepted_peer=True)
    assert not named.applies_to("bob@co.com", accepted_peer=True)


def test_a_job_is_hashed_only_when_a_rule_has_its_exact_path_set():
    index = RuleIndex([LIVE])
    other = {"run.sh": FILES["run.sh"], "code/b.sh": "echo b\n"}
    hashed, calls = hash_of(other)

    result = match(frozenset(other), [], ALICE, True, index, hashed)

    assert result.rule is None and calls == []
    assert "extra code/b.sh" in result.why and "missing code/a.sh" in result.why


def test_equal_means_every_hash_equal_in_full():
    index = RuleIndex([LIVE])
    hashed, calls = hash_of(FILES)
    assert match(frozenset(FILES), [], ALICE, True, index, hashed).rule is LIVE
    assert sorted(calls) == sorted(FILES)

    changed = dict(FILES, **{"code/a.sh": "echo a \n"})
    hashed, _ = hash_of(changed)
    result = match(frozenset(changed), [], ALICE, True, index, hashed)
    assert result.rule is None
    assert result.why == "content differs: rule 'live': code/a.sh differ"
    assert result.hashes["code/a.sh"] == sha("echo a \n")


def test_refused_files_never_match():
    index = RuleIndex([LIVE])
    hashed, calls = hash_of(FILES)
    result = match(frozenset(FILES), ["code/x is a symlink"], ALICE, True, index, hashed)
    assert result.rule is None and result.why == "refused: code/x is a symlink"
    assert calls == []


def test_the_first_matching_rule_in_config_order_wins():
    second = Rule("second", files=LIVE.files)
    narrow = Rule("narrow", peers=("bob@co.com",), files=LIVE.files)
    index = RuleIndex([narrow, LIVE, second])
    hashed, _ = hash_of(FILES)
    assert match(frozenset(FILES), [], ALICE, True, index, hashed).rule is LIVE


def test_the_fingerprint_follows_the_live_rules_only():
    off = Rule("off", files={"run.sh": sha("x")}, enabled=False)
    assert RuleIndex([LIVE]).fingerprint == RuleIndex([LIVE, off]).fingerprint
    changed = Rule("live", files={**LIVE.files, "run.sh": sha("other")})
    assert RuleIndex([LIVE]).fingerprint != RuleIndex([changed]).fingerprint
