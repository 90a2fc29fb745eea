"""The webhook: never redirected, one deadline for the whole call, secrets masked; against
small local servers on 127.0.0.1."""
import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from staging_deploy.report import Reporter, Summary
from staging_deploy.story import notify


def serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class Redirect(BaseHTTPRequestHandler):
    posts = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Redirect.posts.append((self.path, body))
        self.send_response(307)   # 307 would make a client re-send the body to the new place
        self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_redirect_is_not_followed_and_counts_as_a_failure():
    server, url = serve(Redirect)
    out = io.StringIO()
    try:
        sent = notify.send(url + "/hook", Summary("deploy", "a" * 40, result="succeeded"),
                           Reporter(stream=out))
    finally:
        server.shutdown()
    assert not sent and [path for path, _ in Redirect.posts] == ["/hook"]
    assert "webhook notification failed (HTTP 307)" in out.getvalue()


def test_a_trickling_server_cannot_hold_the_deploy_past_the_deadline(monkeypatch):
    monkeypatch.setattr(notify, "DEADLINE", 1.5)
    listener = socket.create_server(("127.0.0.1", 0))

    def trickle():
        conn, _ = listener.accept()
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
            conn.send(bytes([byte]))   # each byte well inside the per-read timeout
            time.sleep(0.5)

    threading.Thread(target=trickle, daemon=True).start()
    out = io.StringIO()
    began = time.monotonic()
    sent = notify.send(f"http://127.0.0.1:{listener.getsockname()[1]}/hook",
                       Summary("deploy", "a" * 40, result="failed"), Reporter(stream=out))
    assert not sent and time.monotonic() - began < 2.5
    assert "no answer in 1.5s" in out.getvalue()


def test_the_message_masks_every_form_of_a_secret(mocker):
    secret = "tok/en+with=chars"
    post = mocker.patch("staging_deploy.story.notify.requests.post")
    post.return_value.status_code = 200
    summary = Summary("deploy", "a" * 40, result="failed", cause="login failed for tok%2Fen%2Bwith%3Dchars")
    assert notify.send("https://hooks.example/x", summary, Reporter([secret], stream=io.StringIO()))
    body = json.dumps(post.call_args.kwargs["json"])
    assert "tok%2Fen" not in body and "***" in body
    assert post.call_args.kwargs["allow_redirects"] is False


@pytest.mark.parametrize("text", ["quote", "plus", "b64", "basic", "line", "stripped"])
def test_every_form_of_a_secret_is_redacted(text):
    import base64
    from urllib.parse import quote, quote_plus

    from staging_deploy.report import redact, secret_forms
    key = ("-----BEGIN KEY-----\nAAAAB3NzaC1yc2EAAAADAQABAAABAQC7\n"
           "ZZZZB3NzaC1yc2EAAAADAQABAAABAQC8\n-----END KEY-----\n")
    password = "p@ss word/+="
    forms = secret_forms([password, key, f"bot:{password}"])
    shown = {"quote": quote(password, safe=""), "plus": quote_plus(password),
             "b64": base64.b64encode(password.encode()).decode().rstrip("="),
             "basic": "Basic " + base64.b64encode(f"bot:{password}".encode()).decode(),
             "line": "ZZZZB3NzaC1yc2EAAAADAQABAAABAQC8", "stripped": key.strip()}[text]
    assert redact(f"before {shown} after", forms).count("***") >= 1
    assert shown not in redact(f"before {shown} after", forms)


def test_text_from_elsewhere_loses_its_meaning_in_the_chat_and_the_terminal():
    """issue 29: an ACME server's detail quotes whatever the name's DNS points to."""
    from staging_deploy.compose.certificate import explain
    from staging_deploy.report import Summary
    from staging_deploy.story.notify import payload
    hostile = "\x1b[31m<!channel> <https://evil.example|click> & " + "x" * 500
    line = explain("incorrectResponse\x1b]0;t\x07", hostile, "staging.example.com")
    assert "\x1b" not in line and "\x07" not in line and len(line) < 500
    summary = Summary("deploy", "a" * 40, url="https://staging.example.com")
    summary.result, summary.cause, summary.duration = "failed", line, 1.0
    message = payload(summary)
    for text in (message["text"], message["attachments"][0]["fields"][-1]["value"]):
        assert "<!channel>" not in text and "<https://evil" not in text
        assert "&lt;!channel&gt;" in text and "&amp;" in text
