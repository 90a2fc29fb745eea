"""Tell the team: a Slack-compatible webhook message on success and on failure.

A slow or broken webhook must never fail or hold up a deploy: one POST, never redirected (that
would send the message on to wherever the answer points), with one deadline for the whole call
(a server that trickles its answer byte by byte cannot stretch it); any error is a warning line.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Dict, Optional

import requests

if TYPE_CHECKING:
    from ..report import Reporter, Summary

TIMEOUT = (2, 3)   # seconds to connect, seconds between bytes of the answer
DEADLINE = 5       # seconds for the whole call


def escaped(text: str) -> str:
    """Text from elsewhere (a cause may quote an ACME server, a command's output) as plain text
    in a Slack-compatible message: `<!channel>`, `<https://x|link>` and `&` lose their meaning."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def payload(summary: Summary) -> dict:
    ok = summary.result == "succeeded"
    cause = escaped(summary.cause or "")
    text = (f"{'✅' if ok else '❌'} staging {summary.action} {summary.result}: "
            f"`{summary.sha[:12]}`" + (f" — {cause}" if cause else ""))
    fields = [{"title": "sha", "value": summary.sha, "short": False},
              {"title": "result", "value": summary.result, "short": True},
              {"title": "duration", "value": f"{summary.duration:.1f}s", "short": True},
              {"title": "url", "value": summary.url, "short": False}]
    if cause:
        fields.append({"title": "cause", "value": cause, "short": False})
    return {"text": text, "attachments": [{"color": "good" if ok else "danger", "fields": fields}]}


def send(url: Optional[str], summary: Summary, reporter: Reporter) -> bool:
    """POST the summary to `url`; report (never raise) a failure. Returns whether it was sent."""
    if not url:
        return False
    body = payload(summary)
    # the cause may quote command output: redact it like everything else we print
    body["text"] = reporter.redact(body["text"])
    for field in body["attachments"][0]["fields"]:
        field["value"] = reporter.redact(str(field["value"]))
    outcome: Dict[str, object] = {}

    def post() -> None:
        try:
            outcome["status"] = requests.post(url, json=body, timeout=TIMEOUT,
                                              allow_redirects=False).status_code
        except requests.RequestException as exc:
            outcome["error"] = type(exc).__name__

    sender = threading.Thread(target=post, daemon=True)   # left behind if past the deadline
    sender.start()
    sender.join(DEADLINE)
    status = outcome.get("status")
    if isinstance(status, int) and 200 <= status < 300:
        return True
    why = (outcome.get("error") or (f"HTTP {status}" if status else f"no answer in {DEADLINE}s"))
    reporter.say(f"warning: the webhook notification failed ({why}); the deploy result above "
                 "stands")
    return False
