"""The documentation stays true: every setting and module documented, every link and task
named valid, the packages free of import cycles and of oversized modules."""
import ast
import re
import subprocess
import sys

from staging_deploy.config.definitions import SETTINGS
from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MODULE_LINES = 400


def test_the_configuration_page_documents_every_setting():
    page = (ROOT / "docs" / "CONFIGURATION.md").read_text()
    missing = [s.env for s in SETTINGS if f"| `{s.env}` |" not in page]
    assert not missing, f"docs/CONFIGURATION.md's table lacks {missing}"


def test_the_settings_table_is_the_one_the_settings_generate():
    from staging_deploy.config.defaults import tool_defaults
    from staging_deploy.config.definitions import settings_table
    assert settings_table(tool_defaults()) in (ROOT / "docs" / "CONFIGURATION.md").read_text(), \
        "docs/CONFIGURATION.md's settings table is not what the settings generate: paste the " \
        "output of staging_deploy.config.definitions.settings_table(tool_defaults()) over it"


def modules():
    return sorted(str(p.relative_to(ROOT / "fabfile")) for p in (ROOT / "fabfile").rglob("*.py")
                  if p.name != "__init__.py")


def test_the_module_map_names_every_module_of_the_tool():
    mapped = sorted(re.findall(r"^- ([\w/]+\.py) ", (ROOT / "docs" / "CODE.md").read_text(), re.M))
    assert mapped == modules()
    packages = sorted(p.name for p in (ROOT / "fabfile").iterdir() if (p / "__init__.py").exists())
    init = (ROOT / "fabfile" / "__init__.py").read_text()
    assert sorted(re.findall(r"^- (\w+)/ ", init, re.M)) == packages


def test_the_distribution_ships_every_package_and_file_of_the_tool():
    """pyproject.toml lists the packages by hand (fabfile/ is installed as staging_deploy):
    a new sub-package or data file must be listed there too."""
    import tomllib
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = sorted("staging_deploy" + ("." + ".".join(p.relative_to(ROOT / "fabfile").parts)
                                          if p != ROOT / "fabfile" else "")
                      for p in [ROOT / "fabfile", *(ROOT / "fabfile").rglob("*")]
                      if (p / "__init__.py").is_file())
    assert sorted(tool["packages"]) == packages
    shipped = {str(p.relative_to(ROOT / "fabfile")) for pattern in tool["package-data"]["staging_deploy"]
               for p in (ROOT / "fabfile").glob(pattern)}
    data = {str(p.relative_to(ROOT / "fabfile")) for p in (ROOT / "fabfile").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    assert data <= shipped, data - shipped


def slug(heading):
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_link_in_the_docs_leads_somewhere():
    broken = []
    for page in DOCS:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md":
                anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", file.read_text(), re.M)}
                if anchor not in anchors:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken


def test_every_task_the_docs_name_exists():
    listed = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    tasks = {line.split()[0] for line in listed.splitlines()[1:] if line.strip()}
    named = set()
    task = r"((?:deploy|staging|testbed)\.[a-z-]+|bench(?:-db)?)(?![\w.])"
    for page in DOCS:
        text = page.read_text()
        named |= set(re.findall(r"\binv(?:oke)? (?:--help )?" + task, text))   # inv deploy.x
        named |= set(re.findall(r"^\| `" + task, text, re.M))                 # the task table
    unknown = sorted(named - tasks)
    assert named and not unknown, unknown


def imports_of(path):
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_the_tool_has_no_import_cycles():
    """Every import counts, those only for type checking and inside functions too."""
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (ROOT / "fabfile").rglob("*.py")}
    graph = {name: {m for m in imports_of(path) if m in files and m != name}
             for name, path in files.items()}
    cycles, done = [], set()

    def visit(name, trail):
        if name in trail:
            cycles.append(trail[trail.index(name):] + [name])
            return
        if name in done:
            return
        for other in sorted(graph[name]):
            visit(other, trail + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert not cycles, cycles


def test_no_module_of_the_tool_is_over_about_400_lines():
    long = {m: n for m in modules()
            if (n := len((ROOT / "fabfile" / m).read_text().splitlines())) > MODULE_LINES}
    assert not long, long


def test_the_target_is_told_apart_in_one_place():
    """Which target runs the releases is decided by config.definitions.is_swarm alone (issue
    30): the rest asks `settings.on_swarm` or the Target, never compares DEPLOY_TARGET."""
    compared = re.compile(r"DEPLOY_TARGET\W*\)?\s*[!=]=|[!=]=\s*['\"](swarm|compose)['\"]")
    files = [ROOT / "fabfile" / m for m in modules()] + [ROOT / "tasks.py"]
    places = [f"{path.relative_to(ROOT)}:{n}" for path in files
              for n, line in enumerate(path.read_text().splitlines(), 1) if compared.search(line)]
    assert len(places) == 1 and places[0].startswith("fabfile/config/definitions.py:"), places
