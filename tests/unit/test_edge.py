"""The edge's routing files: users to the live slot (the previous one standing by in a watch
window), each slot's server routing by path to the slot's services with the routes of the
release in it, Swarm's routes to the services' tasks; and the live slot read back."""
import re

from staging_deploy.compose.edge import (
    entry_before_routes,
    live_conf,
    parse_live_conf,
    routes_conf,
    swarm_routes_conf,
)
from staging_deploy.config.declared import Route
from staging_deploy.config.settings import load_settings
from tests.conftest import ROOT

EDGE = (ROOT / "fabfile" / "files" / "edge" / "nginx.conf").read_text()


def locations(text):
    """{location: its block's lines}"""
    blocks, name = {}, None
    for line in text.splitlines():
        if line.startswith("location "):
            name = line.split()[1]
            blocks[name] = []
        elif name and line.strip() != "}":
            blocks[name].append(line.strip())
    return blocks


def test_users_go_to_the_live_slot_and_in_the_watch_window_failures_to_the_previous(settings):
    assert live_conf("green") == "set $live_slot green;\n"
    watched = live_conf("green", fallback="blue")
    assert watched.splitlines() == ["set $live_slot green;", "set $watching -watched;",
                                    "set $fallback_slot blue;", "proxy_intercept_errors on;",
                                    "error_page 502 503 504 = @fallback;"]
    # the edge maps each slot to its server, and has the fallback location
    for name in ("live", "fallback", "candidate"):
        assert re.search(r"\$%s {\n\s+blue 127.0.0.1:8201;\n\s+green 127.0.0.1:8202;" % name, EDGE)
    assert "location @fallback" in EDGE and "proxy_pass http://$fallback;" in EDGE
    # in a window, users reach the new slot through its watched server (and only then)
    assert "map $live_slot$watching $live {" in EDGE
    assert re.search(r"blue-watched 127.0.0.1:8211;\n\s+green-watched 127.0.0.1:8212;", EDGE)
    assert 'set $watching "";' in EDGE


def server(port):
    """The edge's server block that listens on 127.0.0.1:`port`."""
    block = EDGE[EDGE.index(f"listen 127.0.0.1:{port};"):]
    return block[:block.index("}")]


def test_only_the_new_slot_in_its_window_gives_up_on_a_dead_address_sooner():
    """Each slot's server connects within 1.5 s (under a client's 2 s, so a 504 still leaves
    time for the fallback); the watched servers within 500 ms, their 504 going to the slot
    standing by, whose own server keeps 1.5 s."""
    for port, slot in ((8201, "blue"), (8202, "green"), (8211, "blue"), (8212, "green")):
        timeout = "500ms" if port > 8210 else "1500ms"
        assert f"proxy_connect_timeout {timeout};" in server(port)
        assert f"set $slot {slot};" in server(port) and f"routes-{slot}*.conf;" in server(port)


def test_the_live_slot_is_read_back_also_from_what_earlier_versions_wrote():
    assert parse_live_conf(live_conf("green")) == "green"
    assert parse_live_conf(live_conf("blue", fallback="green")) == "blue"
    assert parse_live_conf("set $app frontend-green:80;\nset $fallback frontend-blue:80;\n") == "green"
    assert parse_live_conf("") is None and parse_live_conf("set $app nothing;") is None


def test_a_live_slot_from_before_routes_is_read_as_its_one_route():
    old = "set $app frontend-green:80;\nset $fallback frontend-blue:80;\n"
    assert entry_before_routes(old) == ("green", Route("/", "frontend", 80))
    assert entry_before_routes(live_conf("green")) is None and entry_before_routes("") is None


def test_a_release_routes_each_path_to_its_service_in_whichever_slot_it_runs(settings):
    blocks = locations(routes_conf(settings.routes))
    assert blocks == {"/api/": ["set $upstream backend-$slot:4000;", "proxy_pass http://$upstream;"],
                      "/": ["set $upstream frontend-$slot:80;", "proxy_pass http://$upstream;"]}
    # each slot's server sets $slot, names itself in every answer (never the app's header of
    # that name), and includes the routes of the release in it
    for slot, port in (("blue", 8201), ("green", 8202), ("blue", 8211), ("green", 8212)):
        assert f"set $slot {slot};" in server(port) and f"routes-{slot}*.conf;" in server(port)
        assert "add_header X-Deploy-Slot $slot always;" in server(port)
        assert "proxy_hide_header X-Deploy-Slot;" in server(port)


def test_an_app_with_one_entry_service_needs_one_route(defaults, environ):
    """An app whose entry is `web` on port 3000 (its web server proxies the API itself)."""
    settings = load_settings(dict(defaults, routes=[{"path": "/", "service": "web",
                                                     "port": 3000}]), environ)
    assert list(locations(routes_conf(settings.routes))) == ["/"]
    assert "set $upstream web-$slot:3000;" in routes_conf(settings.routes)
    assert "set $upstream web:3000;" in swarm_routes_conf(settings)


def test_swarm_routes_go_to_each_services_tasks(settings):
    blocks = locations(swarm_routes_conf(settings))
    assert blocks == {"/api/": ["set $upstream backend:4000;", "proxy_pass http://$upstream;"],
                      "/": ["set $upstream frontend:80;", "proxy_pass http://$upstream;"]}
    assert "stack-routes.conf" in (ROOT / "fabfile" / "files" / "edge" / "stack.conf").read_text()
