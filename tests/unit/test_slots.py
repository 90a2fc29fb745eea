"""Blue/green decisions, without Docker: which containers are the live release, where a
release is, and that retiring a slot touches that slot's containers only."""
from staging_deploy.compose.running import release_from
from staging_deploy.compose.slots import retire
from staging_deploy.compose.target import slot_holding
from staging_deploy.story.health import Answer, Probe
from staging_deploy.transport.commands import Result

A, B = "a" * 40, "b" * 40


def row(project, service, revision="", state="running", health="healthy", cid=None):
    return {"Id": cid or f"{project}/{service}", "Project": project, "Service": service,
            "State": state, "Health": health, "ExitCode": 0, "RestartCount": 0,
            "Image": f"img-{revision or service}", "Revision": revision}


STABLE = [row("classroom-manager", s) for s in ("postgres", "redis")] + \
         [row("classroom-manager", "edge", health="")]


def both_slots():
    return STABLE + [row("classroom-manager-blue", "frontend", A),
                     row("classroom-manager-blue", "backend", A),
                     row("classroom-manager-green", "frontend", B),
                     row("classroom-manager-green", "backend", B, state="exited")]


def live_probe(sha, slot, rows):
    body = '{"success": true, "data": {"status": "healthy"}}'
    wanted = {"classroom-manager", f"classroom-manager-{slot}"}
    edge = {"x-deploy-slot": slot}
    return Probe([c for c in rows if c["Project"] in wanted],
                 [Answer("host", 200, body, edge), Answer("public URL", 200, body, edge)])


def test_the_running_release_is_the_live_slot_whatever_the_other_holds(settings):
    running = release_from(live_probe(A, "blue", both_slots()), settings, "blue")
    assert (running.sha, running.healthy, running.slot) == (A, True, "blue")
    assert running.images == {"frontend": f"img-{A}", "backend": f"img-{A}"}


def test_a_live_release_whose_app_restarted_is_not_healthy(settings):
    """App containers are new with each release (and a reboot resets the count): a restart is
    the release crashing, even when this one look finds it answering again."""
    rows = both_slots()
    rows[4]["RestartCount"] = 3        # blue's backend
    running = release_from(live_probe(A, "blue", rows), settings, "blue")
    assert not running.healthy
    assert running.reason == "backend restarted 3 time(s) since it went live (crashing)"
    rows[4]["RestartCount"], rows[0]["RestartCount"] = 0, 2     # postgres, long ago
    assert release_from(live_probe(A, "blue", rows), settings, "blue").healthy


def test_nothing_is_running_before_the_edge_names_a_slot(settings):
    running = release_from(live_probe(A, "blue", both_slots()), settings, None)
    assert running.sha is None and not running.healthy


def test_a_release_is_found_in_its_slot_preferring_the_live_one(settings):
    rows = both_slots()
    assert slot_holding(rows, settings, A, "green") == "blue"
    assert slot_holding(rows, settings, B, "blue") == "green"  # stopped containers count too
    assert slot_holding(rows, settings, "c" * 40, "blue") is None
    doubled = rows + [row("classroom-manager-green", "frontend", A, cid="x")]
    assert slot_holding(doubled, settings, A, "green") == "green"


class FakeRunner:
    dry_run = False

    def __init__(self, listing):
        self.listing, self.ran = listing, []

    def run(self, command, what="", check=True, timeout=None):
        self.ran.append(command.render())
        return Result(0, self.listing if command.argv[:2] == ("docker", "ps") else "", "")


def test_retiring_a_slot_stops_then_removes_only_its_containers(settings):
    runner = FakeRunner("c1 classroom-manager\nc2 classroom-manager-green\nc3 other\n"
                        "c4 classroom-manager-green\nc5 classroom-manager-blue\n")
    assert retire(runner, settings, "green") == 2
    assert runner.ran[1:] == ["docker stop c2 c4 && docker rm c2 c4"]   # rm only once stopped


def test_retiring_an_empty_slot_runs_nothing_but_the_listing(settings):
    runner = FakeRunner("c1 classroom-manager\n")
    assert retire(runner, settings, "blue") == 0
    assert len(runner.ran) == 1
