"""Tell the team: a Slack-compatible webhook message on success and on failure.

A slow or broken webhook must never fail or hold up a deploy: one POST with a short timeout,
and any error becomes a warning line.
"""
import requests

TIMEOUT = (2, 3)   # seconds to connect, seconds to answer


def payload(summary) -> dict:
    ok = summary.result == "succeeded"
    text = (f"{'✅' if ok else '❌'} staging {summary.action} {summary.result}: "
            f"`{summary.sha[:12]}`" + (f" — {summary.cause}" if summary.cause else ""))
    fields = [{"title": "sha", "value": summary.sha, "short": False},
              {"title": "result", "value": summary.result, "short": True},
              {"title": "duration", "value": f"{summary.duration:.1f}s", "short": True},
              {"title": "url", "value": summary.url, "short": False}]
    if summary.cause:
        fields.append({"title": "cause", "value": summary.cause, "short": False})
    return {"text": text, "attachments": [{"color": "good" if ok else "danger", "fields": fields}]}


def send(url: str, summary, reporter) -> bool:
    """POST the summary to `url`; report (never raise) a failure. Returns whether it was sent."""
    if not url:
        return False
    body = payload(summary)
    # the cause may quote command output: redact it like everything else we print
    body["text"] = reporter.redact(body["text"])
    for field in body["attachments"][0]["fields"]:
        field["value"] = reporter.redact(str(field["value"]))
    try:
        response = requests.post(url, json=body, timeout=TIMEOUT)
        response.raise_for_status()
        return True
    except requests.RequestException as exc:
        reporter.say(f"warning: the webhook notification failed ({type(exc).__name__}); "
                     "the deploy result above stands")
        return False
