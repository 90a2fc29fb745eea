"""The container's healthcheck (compose/app.yaml, stack-app.yaml): exit 0 when /api/health
answers 200. Run every 2 s in every backend container, so it imports next to nothing (run with
`python3 -S`): a plain HTTP/1.0 request over a socket."""
import os
import socket
import sys

PORT = int(os.environ.get("PORT", "4000"))


def main():
    try:
        with socket.create_connection(("127.0.0.1", PORT), timeout=3) as conn:
            conn.sendall(b"GET /api/health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            status_line = conn.makefile("rb").readline()
    except OSError:
        return 1
    return 0 if status_line.split()[1:2] == [b"200"] else 1


if __name__ == "__main__":
    sys.exit(main())
