"""execute.network: off, internet (the default) and host, run for real under bwrap.

Every server here is started by the test on this machine; no job sends traffic
anywhere else. Under ``internet`` slirp4netns gives the sandbox its way out.
"""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PATIENCE, App, job_user_alone
from hostile import run_until_finished

from syft_bg_app.actions import setup_check
from syft_bg_app.approval import decisions
from syft_bg_app.config.load import parse_config
from syft_bg_app.datasite.layout import JobRef
from syft_bg_app.execution import netfilter, sandbox
from syft_bg_app.session import changing

DS = "alice@uni.edu"
_PROBE = sandbox.probe_bwrap(network="off")
needs_bwrap = pytest.mark.skipif(not _PROBE.ok, reason=f"bwrap unusable: {_PROBE.detail}")
needs_slirp = pytest.mark.skipif(
    sandbox.find_slirp4netns() is None, reason="slirp4netns is not installed"
)
_filtered = netfilter.filtering_possible() and netfilter.find_nft() is not None
needs_netfilter = pytest.mark.skipif(
    not _filtered, reason="nftables rules need root and nft (package nftables)"
)

# What the job tries, one line per target: NAME CONNECTED|REFUSED.
PROBE_JOB = r"""#!/bin/bash
python3 - <<'PY'
import os, socket
targets = [
    ("tcp-loopback", socket.AF_INET, ("127.0.0.1", __TCP_PORT__)),
    ("tcp-gateway", socket.AF_INET, ("10.0.2.2", __TCP_PORT__)),
    ("abstract-unix", socket.AF_UNIX, "\0__ABSTRACT__"),
]
if "__OTHER_ADDRESS__":
    targets.append(("tcp-other-address", socket.AF_INET, ("__OTHER_ADDRESS__", __OTHER_PORT__)))
for name, family, address in targets:
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(address)
        print(name, "CONNECTED", s.recv(64).decode(errors="replace"))
    except OSError as exc:
        print(name, "REFUSED", exc)
    finally:
        s.close()
with open("/proc/net/dev") as dev:
    print("interfaces", " ".join(sorted(l.split(":")[0].strip() for l in dev.readlines()[2:])))
with open("/proc/net/route") as routes:
    print("default-route", any(line.split()[1] == "00000000" for line in routes.readlines()[1:]))
print("resolv", open("/etc/resolv.conf").read().split())
PY
"""


class Server:
    """A server on this machine that answers each connection with a secret word."""

    def __init__(self, family: int, address: object) -> None:
        self.secret = f"host-secret-{uuid.uuid4().hex[:8]}"
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(self.secret.encode())

    def close(self) -> None:
        self.sock.close()


def _other_address() -> str | None:
    """This machine's first IPv4 address that is not loopback, if it has one."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    for word in out.stdout.split():
        if "." in word and not word.startswith("127."):
            return word
    return None


@pytest.fixture
def servers() -> Iterator[dict[str, Server]]:
    found = {
        "tcp": Server(socket.AF_INET, ("127.0.0.1", 0)),
        "abstract": Server(socket.AF_UNIX, f"\0syftbg-net-{uuid.uuid4().hex[:12]}"),
    }
    other = _other_address()
    if other:
        found["other"] = Server(socket.AF_INET, (other, 0))
    yield found
    for server in found.values():
        server.close()


def _run_probe(tmp_path: Path, servers: dict[str, Server], network: object) -> dict[str, str]:
    other = servers.get("other")
    run_sh = (
        PROBE_JOB.replace("__TCP_PORT__", str(servers["tcp"].sock.getsockname()[1]))
        .replace("__ABSTRACT__", servers["abstract"].sock.getsockname()[1:].decode())
        .replace("__OTHER_ADDRESS__", other.sock.getsockname()[0] if other else "")
        .replace("__OTHER_PORT__", str(other.sock.getsockname()[1]) if other else "0")
    )
    return _run_job(tmp_path, run_sh, network=network)


def _run_job(tmp_path: Path, run_sh: str, **execute: object) -> dict[str, str]:
    """Run ``run_sh`` as an approved job; its stdout lines ``NAME WORDS`` by NAME,
    and its stderr."""
    app = App(tmp_path).init(
        notify={"enabled": False},
        execute={"timeout": int(PATIENCE), "sandbox": "auto", **execute},
    )
    app.cli("peers", "accept", DS, check=True)
    app.submit("probe", run_sh=run_sh)
    assert app.run_pass().exit_code == 0
    with changing(app.home, "test approval") as ctx:
        decisions.approve_job(ctx, JobRef(DS, "probe"), "manual")
    with job_user_alone():
        state = run_until_finished(app, "probe")["probe"]
    review = app.datasite.review_dir(JobRef(DS, "probe"))
    assert state["status"] == "done", (review / "stderr.txt").read_text()
    lines = (review / "stdout.txt").read_text().splitlines()
    seen = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in lines}
    seen["stderr"] = (review / "stderr.txt").read_text()
    return seen


def _reached(seen: dict[str, str], name: str) -> bool:
    return seen[name].startswith("CONNECTED")


@needs_bwrap
@needs_slirp
def test_internet_jobs_cannot_reach_the_owners_loopback_services_or_unix_sockets(tmp_path, servers):
    seen = _run_probe(tmp_path, servers, "internet")
    # The network is up: an interface beside loopback, a default route, slirp's DNS.
    assert seen["interfaces"] == "lo tap0"
    assert seen["default-route"] == "True"
    assert "10.0.2.3" in seen["resolv"]
    for name in ("tcp-loopback", "tcp-gateway", "abstract-unix"):
        assert seen[name].startswith("REFUSED"), (name, seen[name])
    for server in ("tcp", "abstract"):
        assert servers[server].secret not in str(seen)
    if "other" in servers:
        if _filtered:
            # Root: nftables refuses slirp4netns's traffic to the host's own addresses.
            assert seen["tcp-other-address"].startswith("REFUSED"), seen["tcp-other-address"]
        else:
            # Documented limit as an ordinary user: the host's other addresses are
            # reachable (nothing filters them); it also proves the way out works.
            assert _reached(seen, "tcp-other-address"), seen["tcp-other-address"]


@needs_bwrap
def test_network_off_leaves_nothing_but_loopback(tmp_path, servers):
    seen = _run_probe(tmp_path, servers, "off")
    assert seen["interfaces"] == "lo"
    assert seen["default-route"] == "False"
    for name in ("tcp-loopback", "tcp-gateway", "abstract-unix"):
        assert seen[name].startswith("REFUSED"), (name, seen[name])
    if "other" in servers:
        assert seen["tcp-other-address"].startswith("REFUSED")


@needs_bwrap
def test_host_network_written_by_the_owner_reaches_the_hosts_loopback(tmp_path, servers):
    seen = _run_probe(tmp_path, servers, "host")
    assert _reached(seen, "tcp-loopback")
    assert servers["tcp"].secret in seen["tcp-loopback"]
    assert _reached(seen, "abstract-unix")


@needs_bwrap
def test_internet_without_slirp4netns_runs_jobs_cut_off_never_on_the_host_network(
    tmp_path, servers, monkeypatch
):
    # As on a machine where slirp4netns is not installed.
    monkeypatch.setattr(sandbox, "find_slirp4netns", lambda: None)
    seen = _run_probe(tmp_path, servers, "internet")
    assert seen["interfaces"] == "lo"
    assert seen["tcp-loopback"].startswith("REFUSED")
    assert "slirp4netns is not installed" in seen["stderr"]
    config = parse_config(
        f"do_email: a@b.org\nsyftbox_root: {tmp_path}\nexecute: {{network: internet}}\n"
    )
    lines = sandbox.status_lines(config)
    assert any("slirp4netns is not installed" in line and "network off" in line for line in lines)


@pytest.mark.parametrize(
    ("written", "mode", "warned"),
    [
        ("true", "internet", "is now 'internet'"),
        ("yes", "internet", "is now 'internet'"),
        ("on", "internet", "is now 'internet'"),
        ("false", "off", "now written 'off'"),
        ("off", "off", None),
        ("internet", "internet", None),
        ("host", "host", None),
    ],
)
def test_old_boolean_network_values_are_migrated_with_a_warning(written, mode, warned):
    config = parse_config(f"do_email: a@b.org\nexecute:\n  network: {written}\n")
    assert config.get("execute.network") == mode
    network_warnings = [w for w in config.warnings if "execute.network" in w]
    if warned is None:
        assert network_warnings == []
    else:
        [warning] = network_warnings
        assert warned in warning and "config.yaml:3" in warning


def test_the_default_network_is_internet():
    assert parse_config("do_email: a@b.org\n").get("execute.network") == "internet"


def test_an_unknown_network_mode_is_refused_with_the_choices():
    from syft_bg_app.errors import ConfigError

    with pytest.raises(ConfigError, match="off, internet, host"):
        parse_config("do_email: a@b.org\nexecute:\n  network: internt\n")


def test_shutil_finds_slirp4netns_only_on_the_system_path():
    found = sandbox.find_slirp4netns()
    assert found is None or found == shutil.which("slirp4netns", path="/usr/bin:/bin")


@needs_bwrap
def test_internet_whose_slirp4netns_fails_runs_the_job_cut_off_and_the_log_says_so(
    tmp_path, servers, monkeypatch
):
    # A slirp4netns that exits at once without bringing the network up.
    monkeypatch.setattr(sandbox, "find_slirp4netns", lambda: "/bin/false")
    seen = _run_probe(tmp_path, servers, "internet")
    assert seen["interfaces"] == "lo"
    for name in ("tcp-loopback", "abstract-unix"):
        assert seen[name].startswith("REFUSED"), (name, seen[name])
    assert "this job has no network: slirp4netns did not bring the network up" in seen["stderr"]
    assert "it runs with network off" in seen["stderr"]
    logs = App(tmp_path).cli("logs", "execute", check=True).stdout
    assert "ran with network off: slirp4netns did not bring the network up" in logs


# Connects to one port at each address, one line per target: NAME CONNECTED|REFUSED.
NEIGHBOUR_JOB = r"""#!/bin/bash
python3 - <<'PY'
import socket
for name, address in __TARGETS__:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect((address, __PORT__))
        print(name, "CONNECTED", s.recv(64).decode(errors="replace"))
    except OSError as exc:
        print(name, "REFUSED", exc)
    finally:
        s.close()
PY
"""


def _primary_address() -> str | None:
    """The address this machine's default route leaves from (a UDP connect sends nothing)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("203.0.113.1", 9))
        return probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()


@pytest.fixture
def extra_address() -> Iterator[str]:
    """A private address added to this machine for the test, as a LAN address would be."""
    address = f"10.123.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"
    added = subprocess.run(
        ["ip", "addr", "add", f"{address}/32", "dev", "lo"], capture_output=True, text=True
    )
    if added.returncode != 0:
        pytest.skip(f"cannot add an address here: {added.stderr.strip()}")
    yield address
    subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], capture_output=True)


@pytest.fixture
def any_address_server() -> Iterator[Server]:
    server = Server(socket.AF_INET, ("0.0.0.0", 0))
    yield server
    server.close()


def _neighbour_targets(extra: str) -> dict[str, str]:
    targets = {"extra": extra, "loopback": "127.0.0.1", "gateway": "10.0.2.2"}
    primary = _primary_address()
    if primary:
        targets["primary"] = primary
    return targets


def _run_neighbour_job(tmp_path: Path, server: Server, extra: str, **execute: object):
    targets = _neighbour_targets(extra)
    run_sh = NEIGHBOUR_JOB.replace("__TARGETS__", repr(sorted(targets.items()))).replace(
        "__PORT__", str(server.sock.getsockname()[1])
    )
    return _run_job(tmp_path, run_sh, network="internet", **execute)


def _nft(*args: str) -> str:
    return subprocess.run(
        ["nft", *args], capture_output=True, text=True, check=True, timeout=PATIENCE
    ).stdout


@pytest.fixture
def neighbour_table() -> Iterator[str]:
    """Another program's nftables table, which the app must leave as it is."""
    name = f"syftbg_test_neighbour_{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["nft", "-f", "-"],
        input=(
            f"table inet {name} {{\n  chain input {{\n    type filter hook input priority 10;"
            f" policy accept;\n    tcp dport 9 counter accept\n  }}\n}}\n"
        ),
        text=True,
        check=True,
        timeout=PATIENCE,
    )
    yield name
    subprocess.run(["nft", "delete", "table", "inet", name], capture_output=True)


@needs_bwrap
@needs_slirp
@needs_netfilter
def test_internet_jobs_run_by_root_cannot_reach_this_machines_other_addresses(
    tmp_path, any_address_server, extra_address, neighbour_table
):
    neighbour_before = _nft("list", "table", "inet", neighbour_table)
    seen = _run_neighbour_job(tmp_path, any_address_server, extra_address)
    for name in _neighbour_targets(extra_address):
        assert seen[name].startswith("REFUSED"), (name, seen[name])
    assert any_address_server.secret not in str(seen)
    # The rules live in the app's own table; another program's table is untouched.
    assert _nft("list", "table", "inet", neighbour_table) == neighbour_before
    ours = _nft("list", "table", "inet", "syft_bg")
    assert "meta skgid vmap @network_groups" in ours
    assert f"{netfilter.NETWORK_GID} : jump g{netfilter.NETWORK_GID}" in ours


@needs_bwrap
@needs_slirp
@needs_netfilter
def test_network_allow_lets_internet_jobs_reach_the_listed_range_only(
    tmp_path, any_address_server, extra_address
):
    lan = str(ipaddress.ip_network(f"{extra_address}/24", strict=False))
    seen = _run_neighbour_job(tmp_path, any_address_server, extra_address, network_allow=[lan])
    assert seen["extra"] == f"CONNECTED {any_address_server.secret}"
    for name in set(_neighbour_targets(extra_address)) - {"extra"}:
        assert seen[name].startswith("REFUSED"), (name, seen[name])
    group = netfilter.network_group([lan])
    assert group != netfilter.NETWORK_GID
    ours = _nft("list", "chain", "inet", "syft_bg", f"g{group}")
    assert f"ip daddr {lan} accept" in ours
    # A run of an app without the list (another app on this machine) keeps it in place.
    assert netfilter.install(netfilter.find_nft(), []) is None
    assert _nft("list", "chain", "inet", "syft_bg", f"g{group}") == ours


@needs_bwrap
@needs_slirp
def test_internet_run_by_root_without_nft_runs_jobs_cut_off_and_says_why(
    tmp_path, servers, monkeypatch
):
    if not netfilter.filtering_possible():
        pytest.skip("only root filters with nftables")
    # As on a machine where nftables is not installed.
    monkeypatch.setattr(netfilter, "find_nft", lambda: None)
    seen = _run_probe(tmp_path, servers, "internet")
    assert seen["interfaces"] == "lo"
    assert seen["tcp-loopback"].startswith("REFUSED")
    assert "nft (nftables) is not installed" in seen["stderr"]
    assert "network off" in seen["stderr"]
    logs = App(tmp_path).cli("logs", "execute", check=True).stdout
    assert "ran with network off: execute.network is internet but nft" in logs
    report = setup_check.render(setup_check.run_checks(App(tmp_path).home))
    assert "nft (nftables) is not installed" in report
    assert netfilter.INSTALL_NFT in report


@needs_bwrap
@needs_slirp
def test_internet_whose_rules_cannot_be_loaded_runs_the_job_cut_off_and_says_why(
    tmp_path, servers, monkeypatch
):
    if not netfilter.filtering_possible():
        pytest.skip("only root filters with nftables")
    # An nft that refuses every rule set.
    monkeypatch.setattr(netfilter, "find_nft", lambda: "/bin/false")
    seen = _run_probe(tmp_path, servers, "internet")
    assert seen["interfaces"] == "lo"
    assert (
        "this job has no network: this machine's addresses could not be blocked" in (seen["stderr"])
    )
    assert "it runs with network off" in seen["stderr"]
    logs = App(tmp_path).cli("logs", "execute", check=True).stdout
    assert "ran with network off: this machine's addresses could not be blocked" in logs


@needs_bwrap
@needs_slirp
def test_as_an_ordinary_user_status_and_setup_status_say_internet_reaches_private_networks(
    tmp_path, monkeypatch
):
    app = App(tmp_path).init(notify={"enabled": False}, execute={"network": "internet"})
    # As for an app not run as root, which cannot load nftables rules.
    monkeypatch.setattr(netfilter, "filtering_possible", lambda: False)
    config = parse_config(
        f"do_email: a@b.org\nsyftbox_root: {tmp_path}\nexecute: {{network: internet}}\n"
    )
    warned = [line for line in sandbox.status_lines(config) if "private networks" in line]
    assert warned and warned[0].startswith("WARNING")
    assert "run the app as root" in warned[0] and "execute.network: off" in warned[0]
    report = setup_check.render(setup_check.run_checks(app.home))
    assert "can reach its LAN addresses and your private networks" in report
    assert "run the app as root, or write execute.network: off" in report


@pytest.mark.parametrize("written", ["192.168.1.0/33", "my-lan", "[10.0.0.0/8]"])
def test_a_malformed_network_allow_entry_is_refused_with_an_example(written):
    from syft_bg_app.errors import ConfigError

    with pytest.raises(ConfigError, match="must be a network like 192.168.1.0/24"):
        parse_config(f"do_email: a@b.org\nexecute:\n  network_allow: ['{written}']\n")


def test_network_allow_is_read_as_networks():
    config = parse_config("do_email: a@b.org\nexecute:\n  network_allow: [192.168.1.7/24]\n")
    assert config.get("execute.network_allow") == ["192.168.1.0/24"]
    assert parse_config("do_email: a@b.org\n").get("execute.network_allow") == []
