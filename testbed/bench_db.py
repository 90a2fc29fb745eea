"""`inv bench-db`: what a deploy costs as the staging database grows, with and without the
migration check that skips the dump when a release has no migration to apply.

On the testbed: the database is grown to each size with bulk rows (incompressible text, so a
dump costs what a real one does), then a release that changes one line and no schema is
deployed twice: as configured (`migrate_check_command`: no dump), and with the check turned off
(`migrate_check_command: []`: a dump before every release, the earlier behaviour). Medians of
`runs` deploys each. The bulk rows are deleted afterwards (only they: their names say so).
"""
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import testbed
from testbed.bench import ROOT, commit, inv, on_host

SIZES_MB = (0, 500, 2000)
BULK = "bench-bulk-"
# one bulk row: an id, ~200 bytes of hex (compresses about 2:1, like real text), a timestamp
ROW_BYTES = 260


def psql(sql: str) -> str:
    """SQL in the testbed's database, as its owner (inside the postgres container)."""
    result = on_host('docker exec -i classroom-manager-postgres-1 sh -c '
                     '\'psql -q -t -A -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"\'',
                     stdin=sql)
    if result.returncode != 0:
        raise RuntimeError(f"psql failed: {result.stderr[-500:]}")
    return result.stdout.strip()


def database_mb() -> float:
    return int(psql("SELECT pg_database_size(current_database());")) / 2 ** 20


def grow_to(megabytes: float, say) -> float:
    """Add bulk rows until the database is about `megabytes`; returns its size."""
    size = database_mb()
    while size < megabytes * 0.97:
        rows = max(10_000, int((megabytes - size) * 2 ** 20 / ROW_BYTES))
        say(f"  growing the database from {size:.0f} MB by {rows} rows")
        psql(f"INSERT INTO items (name) SELECT '{BULK}' || g || '-' || md5(g::text) || "
             f"md5((g + 1)::text) || md5((g + 2)::text) || md5((g + 3)::text) || "
             f"md5((g + 4)::text) || md5((g + 5)::text) FROM generate_series(1, {rows}) g;")
        size = database_mb()
    return size


def shrink(say) -> None:
    say("  deleting the bulk rows")
    psql(f"DELETE FROM items WHERE name LIKE '{BULK}%'; VACUUM FULL items;")


def timed_deploy(sha: str, env: dict, config: List[str]) -> Dict[str, float]:
    """Deploy `sha`; its wall time and how long its dump step took (0 when none was taken)."""
    started = time.monotonic()
    result = inv(*config, "deploy.staging", "--sha", sha, env=env)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"bench-db deploy failed:\n{result.stdout}{result.stderr}")
    dump = 0.0
    for line in result.stdout.splitlines():
        if " ok back up the database" in line:
            dump = float(line.rsplit("(", 1)[1].rstrip("s)"))
    return {"wall": wall, "dump": dump}


def main(runs: int = 3, say=print) -> str:
    started = time.monotonic()
    testbed.up()
    env = dict(testbed_env())
    no_check = Path(tempfile.mkdtemp()) / "dump-always.yaml"
    no_check.write_text("deploy:\n  migrate_check_command: []\n")
    sides = {"with the migration check": [], "dump before every release": ["-f", str(no_check)]}
    results = {}
    try:
        for target in SIZES_MB:
            size = grow_to(target, say)
            for side, config in sides.items():
                times = []
                for i in range(runs):
                    sha = commit(f"db-{target}-{side[:4]}-{i}-{time.time()}")
                    times.append(timed_deploy(sha, env, config))
                    say(f"  {size:6.0f} MB  {side:<26} wall {times[-1]['wall']:5.1f}s  "
                        f"dump {times[-1]['dump']:5.1f}s")
                results[(target, side)] = (size, times)
    finally:
        shrink(say)
    return report(results, sides, runs, time.monotonic() - started)


def testbed_env() -> dict:
    import os
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STAGING_", "REGISTRY", "GITHUB_"))}
    env["DEPLOY_ENV_FILE"] = str(testbed.ENV_FILE)
    return env


def report(results, sides, runs: int, took: float) -> str:
    lines = ["## Deploy time against database size", "",
             f"`inv bench-db --runs {runs}` on {time.strftime('%Y-%m-%d')}: a release that changes "
             "one line and no schema, deployed to the testbed with its database grown to each size "
             "(bulk rows of incompressible text). Medians of "
             f"{runs} deploys. Took {took / 60:.1f} min.", "",
             "| database | " + " | ".join(f"{side}: wall (dump)" for side in sides) + " |",
             "|---|" + "---|" * len(sides)]
    for target in SIZES_MB:
        cells = []
        for side in sides:
            size, times = results[(target, side)]
            cells.append(f"{statistics.median(t['wall'] for t in times):.1f}s "
                         f"({statistics.median(t['dump'] for t in times):.1f}s)")
        lines.append(f"| {results[(target, next(iter(sides)))][0]:.0f} MB | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write(text: str) -> None:
    """Replace (or add) the section in docs/BENCHMARKS.md."""
    out = ROOT / "docs" / "BENCHMARKS.md"
    current = out.read_text() if out.exists() else "# Benchmarks\n"
    head = current.split("\n## Deploy time against database size", 1)[0].rstrip("\n")
    out.write_text(head + "\n\n" + text)


if __name__ == "__main__":
    print(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
