"""The one writer of config.yaml: the rules change, every other byte stays."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syft_bg_app.config.editor import (
    ConfigChangedError,
    canonical_rules,
    set_values,
    update_rules,
)
from syft_bg_app.config.load import parse_config
from syft_bg_app.errors import ConfigError

H1 = "sha256:" + "1" * 64
H2 = "sha256:" + "2" * 64
NEW_RULE = {"name": "new", "peers": ["alice@uni.edu"], "files": {"run.sh": H1}}

HAND_WRITTEN = f"""\
# my datasite, set up by hand
do_email: owner@datasite.org   # me
syftbox_root: /tmp/SyftBox

approve:
    # peers I trust
    peers:
        approved_domains:
            - openmined.org     # colleagues
        approved_emails: []
    # rules below
    auto_approvals:
        - name: first
          peers: [alice@uni.edu]
          files:
              run.sh: '{H1}'    # pinned by hand
    enabled: true   # keep on

# runs
execute:
    timeout: 60   # one minute
"""


def write(tmp_path, text: str, mode: int = 0o600):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def add_new(rules):
    return rules + [NEW_RULE]


def test_adding_a_rule_keeps_every_other_line_and_comment(tmp_path):
    path = write(tmp_path, HAND_WRITTEN)

    result = update_rules(path, add_new)

    assert result.written and result.notes == []
    after = path.read_text()
    before_lines = HAND_WRITTEN.splitlines()
    after_lines = after.splitlines()
    start = before_lines.index("    auto_approvals:")
    end = before_lines.index("    enabled: true   # keep on")
    assert after_lines[:start] == before_lines[:start]
    tail = len(before_lines) - end
    assert after_lines[-tail:] == before_lines[-tail:]
    config = parse_config(after)
    assert [r["name"] for r in config.get("approve.auto_approvals")] == ["first", "new"]
    assert config.get("execute.timeout") == 60
    assert config.get("approve.peers.approved_domains") == ["openmined.org"]


def test_the_file_mode_is_kept_and_the_write_is_a_replacement(tmp_path):
    path = write(tmp_path, HAND_WRITTEN, mode=0o600)
    inode = path.stat().st_ino

    update_rules(path, add_new)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_ino != inode  # a new file renamed over the old one
    assert not [p for p in tmp_path.iterdir() if p.name != "config.yaml"]


def test_the_init_sample_gets_its_rules_in_place(app):
    before = app.home.config_file.read_text()

    update_rules(app.home.config_file, add_new)

    after = app.home.config_file.read_text()
    assert (
        after.replace(
            "  auto_approvals:\n"
            "    - name: new\n"
            "      peers:\n"
            "        - alice@uni.edu\n"
            "      files:\n"
            f"        run.sh: {H1}\n",
            "  auto_approvals: []\n",
        )
        == before
    )


def test_an_invalid_config_is_not_touched(tmp_path):
    text = HAND_WRITTEN.replace("timeout: 60", "timeout: soon")
    path = write(tmp_path, text)

    with pytest.raises(ConfigError, match="execute.timeout"):
        update_rules(path, add_new)

    assert path.read_text() == text


def test_a_change_that_would_not_validate_is_refused(tmp_path):
    path = write(tmp_path, HAND_WRITTEN)

    with pytest.raises(ConfigError):
        update_rules(path, lambda rules: rules + [{"name": "bad", "files": {"run.sh": "abc"}}])

    assert path.read_text() == HAND_WRITTEN


def test_a_hand_edit_during_the_update_is_not_overwritten(tmp_path):
    path = write(tmp_path, HAND_WRITTEN)

    def meanwhile(rules):
        path.write_text(HAND_WRITTEN.replace("timeout: 60", "timeout: 61"))
        return rules + [NEW_RULE]

    with pytest.raises(ConfigChangedError):
        update_rules(path, meanwhile)

    assert "timeout: 61" in path.read_text()


def test_a_missing_approve_section_is_appended(tmp_path):
    text = "do_email: owner@datasite.org\n# trailing comment\n"
    path = write(tmp_path, text)

    update_rules(path, add_new)

    after = path.read_text()
    assert after.startswith(text)
    assert [r["name"] for r in parse_config(after).get("approve.auto_approvals")] == ["new"]


def test_a_flow_style_approve_section_gets_its_rules_and_keeps_the_comments(tmp_path):
    text = "do_email: owner@datasite.org  # me\napprove: {peers: {approved_domains: [a.org]}}\n"
    path = write(tmp_path, text)

    result = update_rules(path, add_new)

    assert result.written and result.notes == []
    after = path.read_text()
    assert after.startswith("do_email: owner@datasite.org  # me\napprove: {peers: ")
    config = parse_config(after)
    assert config.get("approve.peers.approved_domains") == ["a.org"]
    assert [r["name"] for r in config.get("approve.auto_approvals")] == ["new"]


def test_legacy_forms_are_rewritten_canonical_and_the_rest_kept(tmp_path):
    text = f"""\
# top comment
do_email: owner@datasite.org
approve:
  interval: 5   # old daemon
  jobs:
    peers:
      alice@uni.edu:
        mode: strict
        scripts:
          - name: main.py
            hash: '{H1}'
  peers:
    enabled: true
    approved_domains: [openmined.org]
notify:
  enabled: true  # mails
"""
    path = write(tmp_path, text)

    result = update_rules(path, lambda rules: rules)

    assert result.migrated and result.written
    after = path.read_text()
    assert after.startswith("# top comment\ndo_email: owner@datasite.org\napprove:\n")
    assert after.endswith("notify:\n  enabled: true  # mails\n")
    assert "interval" not in after and "jobs:" not in after and "enabled: true\n  " not in after
    config = parse_config(after)
    assert config.warnings == [
        "config.yaml:11: approve.auto_approvals[0]: rule 'migrated-alice@uni.edu' approves "
        "nothing: it does not pin run.sh, the file that runs; pin it with: syft-bg "
        "auto-approve --from-job <a job you trust> -n migrated-alice@uni.edu  (or: syft-bg "
        "auto-approve <job folder>/run.sh -b <job folder> -n migrated-alice@uni.edu)"
    ]
    [rule] = config.get("approve.auto_approvals")
    assert rule["files"] == {"code/main.py": H1}
    assert config.get("approve.peers.approved_domains") == ["openmined.org"]


def test_nothing_is_written_when_nothing_changes(tmp_path):
    path = write(tmp_path, HAND_WRITTEN)
    mtime = path.stat().st_mtime_ns

    result = update_rules(path, lambda rules: rules)

    assert not result.written
    assert path.stat().st_mtime_ns == mtime


def test_written_rules_read_back_in_canonical_order(tmp_path):
    path = write(tmp_path, HAND_WRITTEN)

    update_rules(
        path,
        lambda rules: [
            {
                "name": "odd paths",
                "peers": [],
                "files": {"code/a b/ü.py": H2, "run.sh": H1},
                "name_only": ["code/#x.json"],
                "timeout": 5,
            }
        ],
    )

    data = yaml.safe_load(path.read_text())
    assert data["approve"]["auto_approvals"] == [
        {
            "name": "odd paths",
            "peers": [],
            "files": {"code/a b/ü.py": H2, "run.sh": H1},
            "name_only": ["code/#x.json"],
            "timeout": 5,
        }
    ]


COMMENTED_RULES = f"""\
do_email: owner@datasite.org
approve:
  auto_approvals:
    # the first one
    - name: one   # mine
      peers: [alice@uni.edu, bob@uni.edu]   # two people
      files:
        run.sh: {H1}   # pinned
    # the second
    - name: two
      files:
        run.sh: {H2}
  # who may connect
  peers:
    approved_domains: []
  enabled: true
"""


def test_an_added_rule_goes_after_the_last_rule_and_every_comment_stays_in_place(tmp_path):
    path = write(tmp_path, COMMENTED_RULES)

    update_rules(path, add_new)

    added = "    - name: new\n      peers:\n        - alice@uni.edu\n      files:\n"
    added += f"        run.sh: {H1}\n"
    assert path.read_text() == COMMENTED_RULES.replace(
        "  # who may connect\n", added + "  # who may connect\n"
    )


def test_a_rule_put_first_goes_above_the_first_rule_s_comment(tmp_path):
    path = write(tmp_path, COMMENTED_RULES)

    update_rules(path, lambda rules: [NEW_RULE, *rules])

    added = "    - name: new\n      peers:\n        - alice@uni.edu\n      files:\n"
    added += f"        run.sh: {H1}\n"
    assert path.read_text() == COMMENTED_RULES.replace(
        "    # the first one\n", added + "    # the first one\n"
    )


def test_removing_a_rule_takes_its_comment_and_keeps_the_other_rules_text(tmp_path):
    path = write(tmp_path, COMMENTED_RULES)

    update_rules(path, lambda rules: [rule for rule in rules if rule["name"] != "two"])

    assert path.read_text() == COMMENTED_RULES.replace(
        f"    # the second\n    - name: two\n      files:\n        run.sh: {H2}\n", ""
    )


def test_removing_the_first_rule_keeps_the_comment_above_the_next(tmp_path):
    path = write(tmp_path, COMMENTED_RULES)

    update_rules(path, lambda rules: rules[1:])

    after = path.read_text()
    assert after.startswith(
        "do_email: owner@datasite.org\napprove:\n  auto_approvals:\n    # the second\n"
        "    - name: two\n"
    )
    assert "# the first one" not in after and "# mine" not in after
    assert after.endswith(
        "  # who may connect\n  peers:\n    approved_domains: []\n  enabled: true\n"
    )


def test_a_changed_rule_keeps_the_comments_of_what_did_not_change(tmp_path):
    path = write(tmp_path, COMMENTED_RULES)

    def without_bob(rules):
        rules[0]["peers"] = ["alice@uni.edu"]
        return rules

    update_rules(path, without_bob)

    after = path.read_text()
    assert "    - name: one   # mine\n      peers: [alice@uni.edu]" in after
    assert f"        run.sh: {H1}   # pinned\n    # the second\n" in after
    assert parse_config(after).get("approve.auto_approvals")[0]["peers"] == ["alice@uni.edu"]


def test_a_removed_legacy_key_leaves_the_comment_above_the_next_key(tmp_path):
    text = COMMENTED_RULES.replace(
        "  enabled: true\n", "  interval: 5  # old\n  # on\n  enabled: true\n"
    )
    path = write(tmp_path, text)

    result = update_rules(path, lambda rules: rules)

    assert result.migrated and result.written
    assert path.read_text() == COMMENTED_RULES.replace(
        "  enabled: true\n", "  # on\n  enabled: true\n"
    )


def test_empty_values_stay_empty_and_a_respaced_line_is_reported(tmp_path):
    text = "do_email: owner@datasite.org\nnotify:\n  smtp:\n    host:\n"
    path = write(tmp_path, text)

    result = update_rules(path, add_new)

    assert path.read_text().startswith(text) and result.notes == []
    respaced = "do_email: owner@datasite.org\nnotify:\n  smtp:\n    port: ~\n"
    path = write(tmp_path, respaced)

    result = update_rules(path, add_new)

    assert path.read_text().startswith(respaced.replace("port: ~", "port:"))
    assert any("re-spaced" in note for note in result.notes)


def test_editing_config_yaml_is_the_only_thing_that_loads_the_round_trip_yaml_library():
    probe = (
        "import sys; import syft_bg_app.passes, syft_bg_app.config.load, "
        "syft_bg_app.config.editor; print(sorted(m for m in sys.modules if 'ruamel' in m))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_field_added_to_the_last_rule_goes_above_the_next_key_s_comment(tmp_path):
    path = write(tmp_path, COMMENTED_RULES)

    def with_timeout(rules):
        rules[1]["timeout"] = 30
        return rules

    update_rules(path, with_timeout)

    assert path.read_text() == COMMENTED_RULES.replace(
        f"        run.sh: {H2}\n", f"        run.sh: {H2}\n      timeout: 30\n"
    )


def test_an_approval_list_added_to_the_approve_section_goes_above_the_next_key_s_comment(
    tmp_path,
):
    text = (
        "do_email: owner@datasite.org\napprove:\n  enabled: true\n# runs\nexecute:\n  timeout: 60\n"
    )
    path = write(tmp_path, text)

    update_rules(path, add_new)

    assert path.read_text() == text.replace(
        "# runs\n",
        "  auto_approvals:\n    - name: new\n      peers:\n        - alice@uni.edu\n"
        f"      files:\n        run.sh: {H1}\n# runs\n",
    )


NO_RULES = (
    "do_email: owner@datasite.org\napprove:\n  auto_approvals: []  # none yet\n"
    + COMMENTED_RULES[COMMENTED_RULES.index("  # who may connect") :]
)
RULE_POOL = [
    {"name": "one", "peers": ["alice@uni.edu"], "files": {"run.sh": H1}},
    {"name": "two", "peers": [], "files": {"run.sh": H2}},
    {"name": "three", "peers": ["bob@uni.edu"], "files": {"run.sh": H1, "code/a.py": H2}},
    {"name": "four", "peers": [], "files": {"run.sh": H2}, "timeout": 9, "enabled": False},
]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    picks=st.lists(st.sampled_from(range(len(RULE_POOL))), unique=True, max_size=4),
    timeouts=st.lists(st.sampled_from([None, 5]), min_size=4, max_size=4),
    start=st.sampled_from([COMMENTED_RULES, NO_RULES]),
)
def test_any_change_to_the_rules_reads_back_exactly_and_keeps_the_other_comments(
    tmp_path, picks, timeouts, start
):
    path = write(tmp_path, start)
    wanted = []
    for pick in picks:
        rule = dict(RULE_POOL[pick])
        if timeouts[pick] is not None:
            rule["timeout"] = timeouts[pick]
        wanted.append(rule)

    update_rules(path, lambda rules: wanted)

    after = path.read_text()
    rules = parse_config(after).get("approve.auto_approvals")
    assert canonical_rules(rules) == canonical_rules(wanted)
    assert after.startswith("do_email: owner@datasite.org\napprove:\n  auto_approvals:")
    assert after.endswith(
        "  # who may connect\n  peers:\n    approved_domains: []\n  enabled: true\n"
    )


def test_a_setting_added_to_an_empty_section_goes_above_the_comment_after_it(tmp_path):
    path = write(tmp_path, "do_email: me@example.org\nnotify:   # mail\n# the end\n")

    written, notes = set_values(path, {"notify.enabled": False, "schedule.interval": 120})

    assert written and notes == []
    assert path.read_text() == (
        "do_email: me@example.org\nnotify:   # mail\n  enabled: false\n# the end\n"
        "schedule:\n  interval: 120\n"
    )
