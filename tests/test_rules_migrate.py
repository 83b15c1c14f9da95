"""Older syft-bg approval configs: migrated to canonical rules, with warnings that say
what each became and what it still needs; none approves a job before run.sh is pinned."""

from __future__ import annotations

import hashlib

import pytest

from syft_bg_app.config.load import parse_config
from syft_bg_app.errors import ConfigError

H1 = "sha256:" + "1" * 64
H2 = "sha256:" + "2" * 64


def sha(data: str) -> str:
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


def parse(approve_block: str):
    text = "do_email: owner@datasite.org\nsyftbox_root: /tmp/x\napprove:\n" + approve_block
    return parse_config(text, "config.yaml")


def rules_of(config) -> dict[str, dict]:
    return {r["name"]: r for r in config.get("approve.auto_approvals")}


def test_syft_bg_0_3_objects_become_rules_relative_to_the_job_folder():
    config = parse(
        f"""\
  auto_approvals:
    enabled: true
    objects:
      my_analysis:
        file_contents:
          - relative_path: main.py
            path: ~/.syft-bg/auto_approvals/my_analysis/main.py
            hash: '{H1}'
          - relative_path: lib/utils.py
            path: ~/.syft-bg/auto_approvals/my_analysis/lib/utils.py
            hash: '{H2.upper().replace("SHA256", "sha256")}'
        file_paths:
          - params.json
        peers:
          - alice@uni.edu
"""
    )
    rule = rules_of(config)["my_analysis"]
    assert rule["files"] == {"code/main.py": H1, "code/lib/utils.py": H2}
    assert rule["name_only"] == ["code/params.json"]
    assert rule["peers"] == ["alice@uni.edu"]
    [warning] = config.warnings
    assert warning.startswith("config.yaml:7: approve.auto_approvals.objects.my_analysis:")
    assert "became rule 'my_analysis'" in warning
    assert "approves nothing until run.sh is pinned" in warning
    assert "--from-job" in warning and "-n my_analysis" in warning
    assert "CRLF" in warning


def test_the_older_0_3_object_keys_and_bare_hashes_are_read():
    config = parse(
        f"""\
  auto_approvals:
    objects:
      old:
        file_contents:
          - name: main.py
            path: /somewhere/main.py
            hash: {"3" * 64}
        file_names: [params.json]
"""
    )
    rule = rules_of(config)["old"]
    assert rule["files"] == {"code/main.py": "sha256:" + "3" * 64}
    assert rule["name_only"] == ["code/params.json"]
    assert rule["peers"] == []


def test_disabled_0_3_auto_approvals_migrate_disabled():
    config = parse(
        f"""\
  auto_approvals:
    enabled: false
    objects:
      x:
        file_contents: [{{relative_path: main.py, path: /p, hash: '{H1}'}}]
"""
    )
    assert rules_of(config)["x"]["enabled"] is False
    assert "disabled" in config.warnings[0]


def test_a_short_0_3_hash_is_an_error_naming_its_line():
    with pytest.raises(ConfigError) as caught:
        parse(
            """\
  auto_approvals:
    objects:
      x:
        file_contents:
          - relative_path: main.py
            path: /p
            hash: 'sha256:abc123'
"""
        )
    message = str(caught.value)
    assert message.startswith("config.yaml:10: approve.auto_approvals.objects.x.file_contents:")
    assert "not a full sha256" in message and "syft-bg hash" in message


def test_0_3_peers_enabled_false_keeps_its_domains_off():
    config = parse(
        """\
  peers:
    enabled: false
    approved_domains:
      - openmined.org
    auto_share_datasets: [census]
"""
    )
    assert config.get("approve.peers") == {
        "approved_domains": [],
        "approved_emails": [],
        "auto_share_datasets": ["census"],
        "rerequest_after_days": 7,
    }
    joined = "\n".join(config.warnings)
    assert "config.yaml:5: approve.peers.enabled:" in joined
    assert "openmined.org is not auto-accepted" in joined
    assert "auto_share_datasets" not in joined


def test_0_3_peers_enabled_true_and_auto_approve_emails_apply():
    config = parse(
        """\
  peers:
    enabled: true
    approved_domains: [openmined.org]
    auto_approve_emails: [Carol@Partner.example]
"""
    )
    assert config.get("approve.peers") == {
        "approved_domains": ["openmined.org"],
        "approved_emails": ["carol@partner.example"],
        "auto_share_datasets": [],
        "rerequest_after_days": 7,
    }


def test_a_current_key_beside_old_peer_keys_is_kept():
    config = parse("  peers:\n    enabled: true\n    rerequest_after_days: 3\n")
    assert config.get("approve.peers.rerequest_after_days") == 3


def test_old_auto_approve_true_accepts_nobody_and_says_so():
    config = parse("  peers:\n    auto_approve: true\n")
    assert config.get("approve.peers") == {
        "approved_domains": [],
        "approved_emails": [],
        "auto_share_datasets": [],
        "rerequest_after_days": 7,
    }
    assert "never accepts everyone" in config.warnings[0]


def test_allowed_script_hashes_with_one_script_pin_it_and_keep_the_rest_by_name():
    config = parse(
        f"""\
  jobs:
    allowed_script_hashes:
      - '{H1}'
      - '{H2}'
    required_filenames:
      - main.py
      - params.json
    allowed_users: []
"""
    )
    rules = rules_of(config)
    assert set(rules) == {"migrated-allowed-script-1", "migrated-allowed-script-2"}
    first = rules["migrated-allowed-script-1"]
    assert first["files"] == {"code/main.py": H1}
    assert first["name_only"] == ["code/params.json"]
    assert first["peers"] == []
    assert rules["migrated-allowed-script-2"]["files"] == {"code/main.py": H2}
    assert config.warnings[0].startswith("config.yaml:6: approve.jobs.allowed_script_hashes:")
    assert all("approves nothing until run.sh is pinned" in w for w in config.warnings)


def test_allowed_script_hashes_that_cannot_be_tied_to_one_file_migrate_to_nothing():
    config = parse(
        f"""\
  jobs:
    allowed_script_hashes: ['{H1}']
    required_filenames: [main.py, utils.py]
    allowed_users: [alice@uni.edu]
"""
    )
    assert config.get("approve.auto_approvals") == []
    assert "cannot tell which file" in config.warnings[0]
    assert "no job is auto-approved by it" in config.warnings[0]


def test_required_filenames_without_hashes_become_a_name_only_rule_for_the_users():
    config = parse(
        """\
  jobs:
    enabled: false
    required_filenames: [main.py]
    allowed_users: [alice@uni.edu]
"""
    )
    rule = rules_of(config)["migrated-required-files"]
    assert rule["name_only"] == ["code/main.py"]
    assert rule["peers"] == ["alice@uni.edu"]
    assert rule["enabled"] is False


def test_per_peer_strict_scripts_become_one_rule_per_peer():
    config = parse(
        f"""\
  interval: 5
  jobs:
    enabled: true
    peers:
      alice@uni.edu:
        mode: strict
        scripts:
          - name: main.py
            hash: '{H1}'
          - name: utils.py
            hash: '{H2}'
      bob@co.com:
        mode: permissive
        scripts: []
"""
    )
    rules = rules_of(config)
    assert list(rules) == ["migrated-alice@uni.edu"]
    alice = rules["migrated-alice@uni.edu"]
    assert alice["peers"] == ["alice@uni.edu"]
    assert alice["files"] == {"code/main.py": H1, "code/utils.py": H2}
    joined = "\n".join(config.warnings)
    assert "config.yaml:8: approve.jobs.peers.alice@uni.edu: per-peer strict form" in joined
    assert "mode 'permissive' is not understood; nothing was migrated for bob@co.com" in joined
    assert "config.yaml:4: approve.interval: no longer used" in joined


def test_migrated_rules_join_canonical_ones_without_name_clashes():
    config = parse(
        f"""\
  auto_approvals:
    - name: migrated-alice@uni.edu
      files: {{run.sh: '{H2}'}}
  jobs:
    peers:
      alice@uni.edu:
        scripts: [{{name: main.py, hash: '{H1}'}}]
"""
    )
    names = [r["name"] for r in config.get("approve.auto_approvals")]
    assert names == ["migrated-alice@uni.edu", "migrated-alice@uni.edu-2"]


def test_a_migrated_rule_approves_nothing_until_run_sh_is_pinned(app):
    app.set_config(execute={"enabled": False})
    run_sh = "#!/bin/bash\nbash code/script.sh\n"
    script = "echo hello\n"
    app.cli("peers", "accept", "alice@uni.edu", check=True)
    text = app.home.config_file.read_text()
    text = text.replace(
        "  auto_approvals: []\n",
        "  auto_approvals:\n"
        "    objects:\n"
        "      hello:\n"
        "        file_contents:\n"
        f"          - {{relative_path: script.sh, path: /x, hash: '{sha(script)}'}}\n"
        "        peers: [alice@uni.edu]\n",
    )
    app.home.config_file.write_text(text)
    folder = app.submit("hello", run_sh=run_sh, files={"script.sh": script})
    # The 0.3 rule checked code only: the job's code matches it exactly.
    app.run_pass()
    assert app.job_state("hello")["status"] == "pending"

    out = app.cli("auto-approve", "run.sh", "-b", str(folder), "-n", "hello", check=True).stdout

    assert "legacy approval settings" in out
    assert "objects:" not in app.home.config_file.read_text()
    [rule] = app.config.get("approve.auto_approvals")
    assert rule["files"] == {"run.sh": sha(run_sh), "code/script.sh": sha(script)}
    assert app.config.warnings == []
    app.run_pass()
    assert app.job_state("hello")["status"] == "approved"
