"""The SSH connection to the staging host: strict host-key pinning, key auth, timeouts, liveness watch.

One Connection serves a whole deploy. Paramiko's RejectPolicy plus the pinned keys from
STAGING_KNOWN_HOSTS means an unknown or changed host key stops us before any remote command.
"""
from __future__ import annotations

import io
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Optional, Protocol

import paramiko
from fabric import Config, Connection

from ..errors import ConfigError, ConnectionLost, DeployError
from .known_hosts import host_key_name, keyscan_hint, pinned_host_keys
from .machines import SSHTransport
from .runner import Runner

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..report import Reporter

# Paramiko logs a traceback from its transport thread when a connection breaks; we report the
# failure ourselves, in one line.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False

# Every LIVENESS_INTERVAL seconds the server must answer an SSH request within LIVENESS_DEADLINE
# seconds, or the connection is closed (so a silent drop or a frozen host is noticed in ~15 s).
LIVENESS_INTERVAL = 5
LIVENESS_DEADLINE = 10
# TCP-level limits too, for direct connections: keepalive probes while idle, and a cap on how long
# sent data may stay unacknowledged while busy.
# TCP_NODELAY: without it each remote command waits some 40 ms on Nagle's algorithm meeting the
# server's delayed ACK (measured on the testbed: `true` 44 ms a command, 3 ms with it).
TCP_OPTIONS = [("TCP_NODELAY", 1), ("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3),
               ("TCP_USER_TIMEOUT", 15000)]
KEY_CLASSES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)



def load_private_key(text: str) -> paramiko.PKey:
    for key_class in KEY_CLASSES:
        try:
            return key_class.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise ConfigError(["STAGING_SSH_KEY is not an unencrypted Ed25519, ECDSA or RSA private key"])




def connect(settings: Settings, user: Optional[str] = None,
            private_key: Optional[str] = None) -> Connection:
    """Open an SSH connection (as the deploy user unless told otherwise), refusing any host key
    that is not pinned."""
    host, port = settings.STAGING_HOST, settings.STAGING_PORT
    user = user or settings.STAGING_USER
    pinned = pinned_host_keys(settings.STAGING_KNOWN_HOSTS, host, port)
    conn = Connection(
        host, user=user, port=port,
        config=Config(overrides={"load_ssh_configs": False}),
        connect_timeout=settings.connect_timeout,
        connect_kwargs={"pkey": load_private_key(private_key or settings.STAGING_SSH_KEY),
                        "look_for_keys": False, "allow_agent": False,
                        "banner_timeout": settings.connect_timeout,
                        "auth_timeout": settings.connect_timeout},
    )
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    known = conn.client.get_host_keys()
    for name, by_type in pinned.items():
        for key_type, key in by_type.items():
            known.add(name, key_type, key)
    name = host_key_name(host, port)
    try:
        conn.open()
    except paramiko.BadHostKeyException as exc:
        raise DeployError(
            f"host key of {name} does NOT match STAGING_KNOWN_HOSTS (offered "
            f"{exc.key.get_name()} {exc.key.get_fingerprint().hex()}). Nothing was run. If the "
            f"server was rebuilt, verify and re-pin it: `{keyscan_hint(host, port)}`") from None
    except paramiko.SSHException as exc:
        if "known_hosts" in str(exc):
            raise DeployError(
                f"host key of {name} is not pinned in STAGING_KNOWN_HOSTS (the server offered a key "
                f"type that is not pinned). Nothing was run. Verify and re-pin it: "
                f"`{keyscan_hint(host, port)}`") from None
        raise DeployError(f"SSH to {user}@{name} failed: {exc}") from None
    except OSError as exc:
        raise DeployError(f"cannot reach {name} over SSH: {exc}") from None
    watch_liveness(conn.transport)
    sock = conn.transport.sock
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in TCP_OPTIONS:
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    return conn


def watch_liveness(transport: paramiko.Transport, interval: float = LIVENESS_INTERVAL,
                   deadline: float = LIVENESS_DEADLINE) -> threading.Thread:
    """Close `transport` when the server stops answering; every command on it then fails at once.

    TCP alone cannot tell: a proxy, load balancer or NAT in between keeps acknowledging our packets
    after the host is gone or frozen. So, like OpenSSH's ServerAliveInterval, we ask the server
    itself (`keepalive@openssh.com`, reply wanted; "success" or "failure" both prove it is there).
    """
    def ask(answered: threading.Event) -> None:
        try:
            transport.global_request("keepalive@openssh.com", wait=True)
        except Exception:  # the transport closed under us: the watch below ends with it
            return
        answered.set()

    def watch() -> None:
        while transport.is_active():
            answered = threading.Event()
            threading.Thread(target=ask, args=(answered,), daemon=True).start()
            if not answered.wait(deadline):
                transport.close()
                return
            time.sleep(interval)

    watcher = threading.Thread(target=watch, name="ssh-liveness", daemon=True)
    watcher.start()
    return watcher


class Session(Protocol):
    """What a deploy needs of its host connection: HostSession, or plan.PlannedSession."""

    @property
    def runner(self) -> Runner: ...

    @property
    def alive(self) -> bool: ...

    def reconnect(self, within: float = 30.0) -> None: ...

    def __enter__(self) -> Session: ...

    def __exit__(self, *exc: object) -> None: ...


class HostSession:
    """The one SSH connection of a deploy, and the Runner on it; can reconnect after a drop."""

    def __init__(self, settings: Settings, reporter: Reporter, user: Optional[str] = None,
                 private_key: Optional[str] = None):
        self.settings = settings
        self.reporter = reporter
        self.user = user or settings.STAGING_USER
        self.private_key = private_key
        self.conn: Optional[Connection] = None
        self._runner: Optional[Runner] = None

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            raise ConnectionLost("not connected to the host")
        return self._runner

    def __enter__(self) -> HostSession:
        with self.reporter.step(f"connect to {self.user}@{self.settings.STAGING_HOST}:"
                                f"{self.settings.STAGING_PORT} (pinned host key)"):
            self._open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        self.conn = connect(self.settings, self.user, self.private_key)
        if self._runner is None:
            self._runner = Runner(SSHTransport(self.conn), "remote", self.reporter.say,
                                  timeout=self.settings.command_timeout)
        else:  # a reconnect: the same Runner (held by whoever runs a recovery) on the new connection
            self._runner.transport = SSHTransport(self.conn)

    @property
    def alive(self) -> bool:
        return bool(self._runner and self._runner.transport.alive)

    def reconnect(self, within: float = 30.0) -> None:
        """After a drop: connect again, retrying for `within` seconds."""
        self.close()
        deadline = time.monotonic() + within
        while True:
            try:
                self._open()
                return
            except DeployError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # closing a dead connection may fail; it is closed either way
                pass
