"""The edge proxy's routing files, written by the deploy.

On one server the edge (nginx, `compose/edge/nginx.conf`) owns the public port. Users are sent
to the live slot, a request to the loopback-only candidate port to the slot its X-Deploy-Slot
header names; either way the request reaches that slot's own server inside the edge, which
routes it by path to the slot's services (`routes-<slot>.conf`: the release's own routes,
invoke.yaml `routes` when it was deployed, so a routes change never touches the release that
is live) and names the slot in the X-Deploy-Slot response header. That header is how a health
check knows which release answered without the app reporting anything.
- `live.conf` (rewritten at every switch): the live slot, and during a watch window the
  previous slot, which answers any request the new one fails with 502, 503 or 504;
- `releases/<sha>/routes.conf`: the release's routes, copied to `routes-<slot>.conf` when it
  starts in a slot.
On Swarm (`compose/edge/stack.conf`), `stack-routes.conf` sends each route to the tasks of its
service. Every value written here was validated (config.read_routes): paths, names, ports.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

from ..config.declared import Route

if TYPE_CHECKING:
    from ..config.settings import Settings

LIVE_FILE = "live.conf"
ROUTES_FILE = "routes.conf"
SWARM_ROUTES_FILE = "stack-routes.conf"


def routes_file(slot: str) -> str:
    """The routes of the release in `slot`, in the edge's config folder."""
    return f"routes-{slot}.conf"


def live_conf(slot: str, fallback: Optional[str] = None) -> str:
    """edge/live.conf (included in the edge's `location /`): users go to `slot`.

    With `fallback` (the previous slot, kept running through the watch window), users reach
    `slot` through its watched server (nginx.conf: a dead address given up on sooner), and a
    request the new slot fails with 502, 503 or 504 is answered by the fallback slot instead."""
    text = f"set $live_slot {slot};\n"
    if fallback:
        text += ("set $watching -watched;\n"
                 f"set $fallback_slot {fallback};\n"
                 "proxy_intercept_errors on;\n"
                 "error_page 502 503 504 = @fallback;\n")
    return text


def parse_live_conf(text: str) -> Optional[str]:
    """The live slot named in edge/live.conf (also as versions before routes wrote it)."""
    match = re.search(r"set \$live_slot (blue|green);", text or "") or \
        re.search(r"set \$app \S+-(blue|green):\d+;", text or "")
    return match.group(1) if match else None


def routes_conf(routes: Sequence[Route]) -> str:
    """A release's routes, for the server of whichever slot it runs in (nginx.conf sets $slot):
    each path prefix to its service's slot-suffixed alias, resolved per request."""
    return "".join(f"location {route.path} {{\n"
                   f"    set $upstream {route.service}-$slot:{route.port};\n"
                   "    proxy_pass http://$upstream;\n}\n" for route in routes)


def entry_before_routes(text: str) -> Optional[Tuple[str, Route]]:
    """(live slot, its one route) from an edge/live.conf written before routes existed
    (`set $app <service>-<slot>:<port>;`, everything to one entry service), or None."""
    match = re.search(r"set \$app (\S+)-(blue|green):(\d+);", text or "")
    if not match or "$live_slot" in text:
        return None
    return match.group(2), Route("/", match.group(1), int(match.group(3)))


def swarm_routes_conf(settings: Settings) -> str:
    """edge/stack-routes.conf (Swarm): every route to the tasks of its service."""
    return "".join(f"location {route.path} {{\n"
                   f"    set $upstream {route.service}:{route.port};\n"
                   "    proxy_pass http://$upstream;\n}\n" for route in settings.routes)

