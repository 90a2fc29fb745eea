"""`deploy.status` and `deploy.history`: what runs now, who holds the lock, what happened."""
from __future__ import annotations

import json
import posixpath
import time
from typing import TYPE_CHECKING

from ..compose import certificate
from ..story.ledger import as_dict, read_entries
from ..story.lock import INFO_FILE, describe_holder, lock_holders
from ..targets import target_for
from ..transport.commands import cmd

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..transport.runner import Runner


def read_status(runner: Runner, settings: Settings) -> dict:
    running = target_for(settings).read_running(runner)
    held = bool(lock_holders(runner, settings))
    holder = {}
    if held:
        raw = runner.run(cmd("cat", posixpath.join(settings.STAGING_DIR, INFO_FILE)), check=False)
        try:
            holder = json.loads(raw.stdout)
        except ValueError:
            holder = {}
    entries = read_entries(runner, settings)
    return {
        "sha": running.sha,
        "healthy": running.healthy,
        "reason": running.reason,
        "slot": running.slot,
        "url": settings.STAGING_URL,
        "containers": [{k: c[k] for k in ("Service", "State", "Health", "RestartCount", "Revision")}
                       for c in running.containers],
        "lock": {"held": held, "holder": holder,
                 "description": describe_holder(holder, time.time()) if held else "free"},
        "last": as_dict(entries[-1]) if entries else None,
        "ledger_skipped": entries.skipped,
        "certificate": certificate.status(runner, settings),
    }


def render_status(status: dict) -> str:
    sha = status["sha"] or "nothing"
    lines = [f"running   {sha}" + (f" (slot {status['slot']})" if status.get('slot') else ""),
             f"health    {'HEALTHY' if status['healthy'] else 'NOT HEALTHY'} ({status['reason']})",
             f"url       {status['url']}",
             f"lock      {status['lock']['description']}"]
    if status.get("certificate"):
        lines.insert(3, f"https     {status['certificate']}")
    for c in status["containers"]:
        lines.append(f"  {c['Service']:<10} {c['State']:<10} {c['Health'] or '-':<10} "
                     f"restarts={c['RestartCount']} {c['Revision'][:12]}")
    last = status["last"]
    if last:
        lines.append(f"last      {last['action']} of {last['sha'][:12]}: {last['result'] or 'UNFINISHED'}"
                     + (f" ({last['cause'].splitlines()[0]})" if last.get("cause") else ""))
    if status.get("ledger_skipped"):
        lines.append(f"ledger    {status['ledger_skipped']} line(s) not of the shape this tool "
                     "writes were skipped (STAGING_DIR/ledger.jsonl on the host)")
    return "\n".join(lines)


def history(runner: Runner, settings: Settings, limit: int) -> list:
    entries = read_entries(runner, settings, lambda found: len(found) >= limit)
    return [as_dict(e) for e in entries[-limit:]][::-1]


def render_history(rows: list) -> str:
    if not rows:
        return "no releases recorded yet"
    lines = [f"{'started':<21} {'action':<9} {'sha':<13} {'result':<16} {'took':>6}  by / detail"]
    for r in rows:
        took = f"{r['duration']:.0f}s" if r.get("duration") is not None else "-"
        detail = r["by"]
        if r.get("rolled_back_to"):
            detail += f"; rolled back to {r['rolled_back_to'][:12]}"
        if r.get("cause"):
            detail += f"; {r['cause'].splitlines()[0][:100]}"
        if r.get("backup"):
            detail += f"; backup {posixpath.basename(r['backup'])}"
        lines.append(f"{r['started']:<21} {r['action']:<9} {r['sha'][:12]:<13} "
                     f"{r['result'] or 'UNFINISHED':<16} {took:>6}  {detail}")
    return "\n".join(lines)
