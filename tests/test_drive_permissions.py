"""Permission files decide over Drive exactly as the syft clients' own engine decides."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from syft_permissions import AccessLevel, ACLRequest, ACLService, User

from syft_bg_app.sync.drive.permissions import PERMISSION_FILE, Permissions

OWNER = "owner@datasite.org"
USERS = ("alice@uni.edu", "bob@uni.edu", "carol@other.org")
LEVELS = (("read", AccessLevel.READ), ("write", AccessLevel.WRITE))
FOLDERS = ("", "a", "a/b", "a/b/c", "a/.h", "d", "d/alice@uni.edu")
NAMES = (
    "a",
    "b",
    "c",
    "d",
    ".h",
    "x.txt",
    "y.csv",
    "alice@uni.edu",
    "bob@uni.edu",
    PERMISSION_FILE,
)
PATTERN_PARTS = (
    "*", "**", "?", "b", "c", "x.txt", "*.txt", "*.csv", ".h", "[ab]", "[!a]*",
    "{{.UserEmail}}", "x*",
)  # fmt: skip
NAMED = ("alice@uni.edu", "bob@uni.edu", "*", "USER", "*@uni.edu", "?ob@uni.edu")


def clients_decide(datasite: Path, email: str, rel: str, level: AccessLevel) -> bool:
    service = ACLService(owner=OWNER)
    service.load_permissions_from_filesystem(datasite)
    return service.can_access(ACLRequest(rel, level, User(email)))


def write_grant(folder: Path, rules: list[dict], terminal: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"rules": rules, "terminal": terminal})
    (folder / PERMISSION_FILE).write_text(text)


def rule(pattern: str, read=(), write=(), admin=()) -> dict:
    return {
        "pattern": pattern,
        "access": {"admin": list(admin), "write": list(write), "read": list(read)},
    }


def assert_same_as_clients(datasite: Path, paths, emails=USERS) -> dict:
    ours = Permissions(datasite)
    service = ACLService(owner=OWNER)
    service.load_permissions_from_filesystem(datasite)
    decisions = {}
    for email in emails:
        for rel in paths:
            for access, level in LEVELS:
                theirs = service.can_access(ACLRequest(rel, level, User(email)))
                assert ours.allows(email, rel, access) == theirs, (email, rel, access)
                decisions[email, rel, access] = theirs
    return decisions


rules_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "pattern": st.lists(st.sampled_from(PATTERN_PARTS), min_size=1, max_size=3).map(
                "/".join
            ),
            "access": st.fixed_dictionaries(
                {
                    kind: st.lists(st.sampled_from(NAMED), max_size=2)
                    for kind in ("admin", "write", "read")
                }
            ),
        }
    ),
    max_size=4,
)
tree_strategy = st.dictionaries(
    st.sampled_from(FOLDERS), st.tuples(rules_strategy, st.booleans()), max_size=4
)
paths_strategy = st.lists(
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=4).map("/".join), min_size=1, max_size=6
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=tree_strategy, paths=paths_strategy)
def test_drive_permission_decisions_equal_the_clients_for_any_tree(tree, paths) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        datasite = Path(scratch) / OWNER
        datasite.mkdir()
        for folder, (rules, terminal) in tree.items():
            write_grant(datasite / folder, rules, terminal)
        # Files only: a name that is a folder with a permission file is no file.
        files = [p for p in paths if not any(f == p or f.startswith(p + "/") for f in tree)]
        assert_same_as_clients(datasite, files)


def test_drive_a_narrower_rule_denies_one_file_under_a_broad_read(tmp_path: Path) -> None:
    datasite = tmp_path / OWNER
    # A DO shares a folder with everyone but keeps one file back: the first rule
    # matches that file too, yet the narrower one decides, as in the clients.
    write_grant(
        datasite / "public",
        [rule("**", read=["*"]), rule("secret.csv"), rule("drafts/*.txt", read=["bob@uni.edu"])],
    )
    paths = ["public/report.csv", "public/secret.csv", "public/drafts/a.txt", "public/deep/x.csv"]
    decisions = assert_same_as_clients(datasite, paths)
    assert decisions["alice@uni.edu", "public/report.csv", "read"]
    assert not decisions["alice@uni.edu", "public/secret.csv", "read"]
    assert not decisions["alice@uni.edu", "public/drafts/a.txt", "read"]
    assert decisions["bob@uni.edu", "public/drafts/a.txt", "read"]
    assert not any(ok for (_, _, access), ok in decisions.items() if access == "write")


def test_drive_each_user_writes_only_their_own_folder_by_template(tmp_path: Path) -> None:
    datasite = tmp_path / OWNER
    write_grant(
        datasite / "app_data/job/peers",
        [rule("**", read=["*@uni.edu"]), rule("{{.UserEmail}}/**", read=["USER"], write=["USER"])],
    )
    write_grant(datasite / "open", [rule("**", read=["USER"])])
    paths = [
        "app_data/job/peers/alice@uni.edu/request.yaml",
        "app_data/job/peers/bob@uni.edu/request.yaml",
        "open/notes.md",
        "open/.hidden/notes.md",
    ]
    decisions = assert_same_as_clients(datasite, paths)
    assert decisions["alice@uni.edu", paths[0], "write"]
    assert not decisions["alice@uni.edu", paths[1], "write"]
    # Filled in for alice, the template rule does not cover bob's folder: the broad
    # rule lets her read it, never write.
    assert decisions["alice@uni.edu", paths[1], "read"]
    assert not decisions["carol@other.org", paths[1], "read"]
    # USER outside a template rule is everyone; ** never reaches a hidden folder.
    assert decisions["carol@other.org", "open/notes.md", "read"]
    assert not decisions["carol@other.org", "open/.hidden/notes.md", "read"]


def test_drive_a_permission_file_itself_needs_admin(tmp_path: Path) -> None:
    datasite = tmp_path / OWNER
    write_grant(datasite / "shared", [rule("**", read=["*"], write=["alice@uni.edu"])])
    write_grant(datasite / "mine", [rule("**", admin=["alice@uni.edu"])], terminal=True)
    paths = [f"shared/{PERMISSION_FILE}", "shared/a.txt", f"mine/{PERMISSION_FILE}", "mine/x/y"]
    decisions = assert_same_as_clients(datasite, paths)
    assert decisions["bob@uni.edu", "shared/a.txt", "read"]
    assert not decisions["bob@uni.edu", f"shared/{PERMISSION_FILE}", "read"]
    assert not decisions["alice@uni.edu", f"shared/{PERMISSION_FILE}", "write"]
    assert decisions["alice@uni.edu", f"mine/{PERMISSION_FILE}", "write"]
    assert decisions["alice@uni.edu", "mine/x/y", "read"]


def test_drive_linked_or_unreadable_permission_files_grant_nothing(tmp_path: Path) -> None:
    datasite = tmp_path / OWNER
    write_grant(datasite, [rule("**", read=["*"])])
    elsewhere = tmp_path / "elsewhere"
    write_grant(elsewhere, [rule("**", read=["*"], write=["*"])])
    (datasite / "linked").mkdir()
    os.symlink(elsewhere / PERMISSION_FILE, datasite / "linked" / PERMISSION_FILE)
    os.symlink(elsewhere, datasite / "through")
    (datasite / "broken").mkdir()
    (datasite / "broken" / PERMISSION_FILE).write_text("rules: [{pattern: '**'\n")
    (datasite / "odd").mkdir()
    (datasite / "odd" / PERMISSION_FILE).write_text("rules: [{pattern: '**', access: {read: x}}]\n")
    ours = Permissions(datasite)
    assert ours.allows("bob@uni.edu", "plain.txt", "read")
    for rel in ("linked/a.txt", "through/a.txt", "broken/a.txt", "odd/a.txt"):
        assert not ours.allows("bob@uni.edu", rel, "read"), rel
        assert not ours.allows("bob@uni.edu", rel, "write"), rel


def test_drive_a_pattern_beyond_the_supported_globs_decides_no(tmp_path: Path) -> None:
    datasite = tmp_path / OWNER
    write_grant(datasite, [rule("**", read=["*"])])
    # A character class with an escape: the clients' glob dialect, not read here. Where
    # such a rule would be asked (it ranks before **), the answer is no.
    write_grant(datasite / "data", [rule("**", read=["*"]), rule("[\\a]*.csv", read=["*"])])
    ours = Permissions(datasite)
    assert ours.allows("bob@uni.edu", "x.txt", "read")
    assert clients_decide(datasite, "bob@uni.edu", "data/a.csv", AccessLevel.READ)
    assert not ours.allows("bob@uni.edu", "data/a.csv", "read")


def test_drive_reads_permission_files_earlier_versions_wrote_with_aliases(tmp_path: Path) -> None:
    datasite = tmp_path / OWNER
    review = datasite / "app_data/job/review/alice@uni.edu/job"
    review.mkdir(parents=True)
    # What the app wrote before its YAML had no aliases: one access mapping used by
    # every rule, written once with an anchor and then as aliases.
    read = {"admin": [], "write": [], "read": ["alice@uni.edu"]}
    grant = {
        "rules": [{"pattern": name, "access": read} for name in ("state.yaml", "stdout.txt")]
        + [{"pattern": "outputs/**", "access": read}],
        "terminal": True,
    }
    text = yaml.safe_dump(grant)
    assert "&id001" in text and "*id001" in text
    (review / PERMISSION_FILE).write_text(text)
    prefix = "app_data/job/review/alice@uni.edu/job/"
    paths = [prefix + p for p in ("state.yaml", "stdout.txt", "stderr.txt", "outputs/r.csv")]
    decisions = assert_same_as_clients(datasite, paths)
    assert decisions["alice@uni.edu", prefix + "outputs/r.csv", "read"]
    assert not decisions["alice@uni.edu", prefix + "stderr.txt", "read"]


def test_drive_a_permission_file_of_nested_aliases_grants_nothing(tmp_path: Path) -> None:
    datasite = tmp_path / OWNER
    datasite.mkdir()
    # A few hundred bytes standing for billions of values once the aliases are spelled out.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    lines += ["rules: [{pattern: '**', access: {read: ['*']}}]", "terminal: true"]
    (datasite / PERMISSION_FILE).write_text("\n".join(lines) + "\n")
    loop = datasite / "loop"
    loop.mkdir()
    (loop / PERMISSION_FILE).write_text("rules: &r [{pattern: '**', access: {read: *r}}]\n")
    ours = Permissions(datasite)
    assert not ours.allows("bob@uni.edu", "a.txt", "read")
    assert not ours.allows("bob@uni.edu", "loop/a.txt", "read")
