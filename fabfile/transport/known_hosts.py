"""STAGING_KNOWN_HOSTS: the pinned host key lines, parsed and looked up."""
from __future__ import annotations

import paramiko

from ..errors import ConfigError


def host_key_name(host: str, port: int) -> str:
    """How known_hosts names a host: bare on port 22, `[host]:port` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def keyscan_hint(host: str, port: int) -> str:
    return f"ssh-keyscan -p {port} {host}" if port != 22 else f"ssh-keyscan {host}"


def known_hosts_entries(text: str) -> list:
    """The entries of known_hosts text; ValueError naming the first line that is not one
    (markers such as @revoked are refused: a pin is a plain host key line)."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            entry = None if line.startswith("@") else paramiko.hostkeys.HostKeyEntry.from_line(line)
        except Exception:  # paramiko raises several kinds for a malformed key
            entry = None
        if entry is None or entry.key is None:
            raise ValueError(f"has a line that is not a known_hosts entry ({line[:40]!r}...): "
                             "use the lines `ssh-keyscan -p PORT HOST` prints")
        entries.append(entry)
    return entries


def pinned_host_keys(known_hosts: str, host: str, port: int) -> paramiko.HostKeys:
    """Parse STAGING_KNOWN_HOSTS; fail unless it pins a key for this host and port."""
    keys = paramiko.HostKeys()
    try:
        entries = known_hosts_entries(known_hosts)
    except ValueError as exc:
        raise ConfigError([f"STAGING_KNOWN_HOSTS {exc}"]) from None
    for entry in entries:
        for name in entry.hostnames:
            keys.add(name, entry.key.get_name(), entry.key)
    name = host_key_name(host, port)
    if keys.lookup(name) is None:
        raise ConfigError([f"STAGING_KNOWN_HOSTS pins no key for {name}; get the line with "
                           f"`{keyscan_hint(host, port)}`, check its fingerprint, and set it"])
    return keys
