"""deploy.logs and deploy.exec without a host: their argument checks, the commands they build,
and the redaction of streamed output."""
import io

from staging_deploy.compose.commands import ComposeCommands
from staging_deploy.ops.incident import PlainText, exec_problems, log_problems
from staging_deploy.report import RedactingStream, held_back

SLOT = ("env DEPLOY_SLOT=blue docker compose -p classroom-manager-blue "
        "-f /opt/classroom-manager/releases/abc/app.yaml "
        "--env-file /opt/classroom-manager/releases/abc/.env "
        "--env-file /opt/classroom-manager/secrets.env")


def test_log_arguments_are_checked_before_connecting(settings):
    assert log_problems(settings, None, None, "100") == []
    assert log_problems(settings, "postgres", "1h30m", "all") == []
    assert log_problems(settings, "backend", "2026-11-27T10:00:00Z", "0") == []
    problems = log_problems(settings, "db", "yesterday", "-5")
    assert problems[0].startswith("unknown service 'db': one of frontend, backend, edge, postgres")
    assert "--since 'yesterday' must be a duration" in problems[1]
    assert "--tail '-5' must be a number of lines" in problems[2]


def test_logs_of_the_live_slot_name_its_files_and_its_services(settings):
    slot = ComposeCommands(settings, "/opt/classroom-manager/releases/abc", "blue")
    assert slot.logs("frontend", "backend", tail="100", prefix=True).render() == (
        SLOT + " logs --no-color --tail 100 frontend backend")
    assert slot.logs("backend", tail="all", since="10m", follow=True).render() == (
        SLOT + " logs --no-color --no-log-prefix --tail all --since 10m --follow backend")


def test_exec_runs_a_new_container_of_an_app_service_only(settings):
    assert exec_problems(settings, "backend", ["sh"]) == []
    assert "not 'postgres'" in exec_problems(settings, "postgres", ["psql"])[0]
    assert "give the command after --" in exec_problems(settings, "backend", [])[0]
    slot = ComposeCommands(settings, "/opt/classroom-manager/releases/abc", "blue")
    one_off = slot.run_one_off("backend", ["python3", "/app/seed.py", "--rows", "two words"],
                               stdin="print(1)")
    assert one_off.render() == (SLOT + " run --rm --no-deps -T --entrypoint python3 backend "
                                "/app/seed.py --rows 'two words'")
    assert one_off.stdin == "print(1)"   # piped input goes on stdin, never into argv
    shell = slot.run_one_off("backend", ["sh"], interactive=True)
    assert " -T " not in shell.render() and shell.render().endswith("--entrypoint sh backend")


def test_a_secret_split_across_writes_is_still_masked():
    out = io.StringIO()
    stream = RedactingStream(["hunter2-secret"], out)
    for piece in ("password=hun", "ter2-se", "cret and more ", "hu", "nt!"):
        stream.write(piece)
    stream.close()
    assert out.getvalue() == "password=*** and more hunt!"


def test_only_a_possible_start_of_a_secret_is_held_back():
    assert held_back("abc hunt", ["hunter2"]) == 4
    assert held_back("abc", ["hunter2"]) == 0
    assert held_back("", ["hunter2"]) == 0
    out = io.StringIO()
    stream = RedactingStream(["hunter2"], out)
    stream.write("line one\n")
    assert out.getvalue() == "line one\n"   # nothing that could start a secret waits


def test_compose_terminal_codes_and_pty_line_ends_are_dropped_from_logs():
    out = io.StringIO()
    PlainText(out).write("\x1b[2Kbackend-1  | ready\r\n")
    assert out.getvalue() == "backend-1  | ready\n"
