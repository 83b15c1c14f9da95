"""What keeps jobs under ``execute.network: internet`` off this machine and the
owner's private networks, when the app runs as root.

slirp4netns (the sandbox's way out) opens its sockets on the host, where
``--disable-host-loopback`` stops only 127.0.0.1 and its gateway address: a
service bound to 0.0.0.0 stays reachable through the host's other addresses,
and so does everything on the owner's LAN. The supervisor therefore starts
slirp4netns with a group of its own (``network_group``) and, just before, loads
the app's own nftables table (``inet syft_bg``) whose rules refuse what sockets
of that group send to this machine's addresses and to private, link-local and
CGNAT ranges, except the ranges the owner lists in ``execute.network_allow``
and DNS to the host's name servers (slirp4netns relays the job's lookups to
them). slirp4netns keeps uid 0 and its own sandbox, which drops every
capability once the network is up: a separate uid could not join the job's
network namespace without keeping CAP_SYS_ADMIN for its whole life.

The table is the app's alone: loading it adds or replaces its chains and never
touches other tables. Runs with different allow lists use different groups,
each with a chain of its own, so they never undo each other's rules.

Imported by the supervisor: standard library only.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import subprocess

TABLE = "inet syft_bg"
# slirp4netns runs with this group (an empty execute.network_allow) or one of the
# GROUP_SLOTS after it: just past the uids the app gives jobs run without bwrap.
NETWORK_GID = 1_879_100_000
GROUP_SLOTS = 65_536
# What sockets of that group never reach, besides this machine's own addresses.
BLOCKED_NETWORKS = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
    "fe80::/10",
)
INSTALL_NFT = "sudo apt-get install nftables"
RESOLV_CONF = "/etc/resolv.conf"
NFT_TIMEOUT = 20.0
_TOOL_PATH = "/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"


def find_nft() -> str | None:
    found = shutil.which("nft", path=_TOOL_PATH)
    return os.path.realpath(found) if found else None


def filtering_possible() -> bool:
    """Only root can load nftables rules and start slirp4netns with a group of its own."""
    return os.geteuid() == 0


def canonical_networks(allow: list[str]) -> list[str]:
    """``allow`` as sorted, merged networks; raises ValueError on a malformed entry."""
    networks = [ipaddress.ip_network(entry.strip(), strict=False) for entry in allow]
    merged: list[str] = []
    for version in (4, 6):
        same = [n for n in networks if n.version == version]
        merged += [str(n) for n in ipaddress.collapse_addresses(same)]  # type: ignore[arg-type]
    return merged


def network_group(allow: list[str]) -> int:
    """The group slirp4netns runs with for this allow list: NETWORK_GID when it is
    empty, else one derived from the list, so runs that allow different ranges
    (two apps on one machine, an edited config) each keep their own rules."""
    networks = canonical_networks(allow)
    if not networks:
        return NETWORK_GID
    digest = hashlib.sha256("\n".join(networks).encode()).digest()
    return NETWORK_GID + 1 + int.from_bytes(digest[:8], "big") % (GROUP_SLOTS - 1)


def host_nameservers(resolv_conf: str = RESOLV_CONF) -> list[str]:
    """The name servers slirp4netns relays the job's DNS queries to."""
    try:
        with open(resolv_conf, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                found.append(str(ipaddress.ip_address(words[1].split("%")[0])))
            except ValueError:
                continue
    return found


def _by_family(addresses: list[str]) -> dict[str, list[str]]:
    families: dict[str, list[str]] = {"ip": [], "ip6": []}
    for address in addresses:
        version = ipaddress.ip_network(address, strict=False).version
        families["ip" if version == 4 else "ip6"].append(address)
    return families


def ruleset(group: int, allow: list[str], nameservers: list[str]) -> str:
    """The nft script that adds or refreshes the table's chains for ``group``.

    One script is one transaction: a run starting meanwhile sees the old rules or
    the new ones, never none."""
    chain = f"g{group}"
    lines = [
        f"add table {TABLE}",
        f"add chain {TABLE} refuse",
        f"flush chain {TABLE} refuse",
        # A reset, so that the job hears "connection refused" at once instead of waiting.
        f"add rule {TABLE} refuse meta l4proto tcp reject with tcp reset",
        f"add rule {TABLE} refuse reject with icmpx admin-prohibited",
        f"add map {TABLE} network_groups {{ type gid : verdict; }}",
        f"add chain {TABLE} {chain}",
        f"flush chain {TABLE} {chain}",
    ]
    for family, addresses in _by_family(nameservers).items():
        if addresses:
            lines.append(
                f"add rule {TABLE} {chain} {family} daddr {{ {', '.join(addresses)} }} "
                f"meta l4proto {{ tcp, udp }} th dport 53 accept"
            )
    for family, networks in _by_family(canonical_networks(allow)).items():
        if networks:
            lines.append(
                f"add rule {TABLE} {chain} {family} daddr {{ {', '.join(networks)} }} accept"
            )
    lines.append(
        f"add rule {TABLE} {chain} fib daddr type {{ local, broadcast, multicast }} goto refuse"
    )
    for family, networks in _by_family(list(BLOCKED_NETWORKS)).items():
        blocked = ", ".join(networks)
        lines.append(f"add rule {TABLE} {chain} {family} daddr {{ {blocked} }} goto refuse")
    lines += [
        f"add chain {TABLE} output {{ type filter hook output priority filter; policy accept; }}",
        f"flush chain {TABLE} output",
        f"add rule {TABLE} output meta skgid vmap @network_groups",
        f"add element {TABLE} network_groups {{ {group} : jump {chain} }}",
    ]
    return "\n".join(lines) + "\n"


def install(nft: str | None, allow: list[str]) -> str | None:
    """Load the rules for ``allow``'s group; None when they are in place, else why not."""
    if nft is None:
        return f"nft (nftables) is not installed. Fix: {INSTALL_NFT}"
    try:
        script = ruleset(network_group(allow), allow, host_nameservers())
    except ValueError as exc:
        return f"execute.network_allow holds a malformed network ({exc})"
    try:
        result = subprocess.run(
            [nft, "-f", "-"],
            input=script,
            capture_output=True,
            text=True,
            timeout=NFT_TIMEOUT,
            env={"PATH": _TOOL_PATH},
        )
    except subprocess.TimeoutExpired:
        return f"nft did not finish loading the rules in {NFT_TIMEOUT:.0f} s"
    except OSError as exc:
        return f"nft could not be started ({exc.strerror})"
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        why = lines[0] if lines else f"exit status {result.returncode}"
        return f"the nftables rules could not be loaded (nft: {why})"
    return None


def blocked_words(allow: list[str]) -> str:
    """What jobs under internet cannot reach here, for status and setup-status."""
    allowed = f", except {', '.join(allow)} (execute.network_allow)" if allow else ""
    return (
        f"internet through slirp4netns; nftables (table {TABLE}) blocks this machine's "
        f"addresses and private networks{allowed}"
    )


def unfiltered_warning() -> str:
    """What internet means for an app not run as root, which nothing can filter."""
    return (
        "execute.network is internet and the app does not run as root: jobs cannot reach "
        "this machine's 127.0.0.1 services, but can reach its LAN addresses and your "
        "private networks (services bound to 0.0.0.0, your router, other machines). "
        "Fix: run the app as root (jobs still run unprivileged), or write "
        "execute.network: off"
    )
