import re

from fabfile.config import SETTINGS
from tests.conftest import ROOT


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    missing = [s.env for s in SETTINGS if f"| `{s.env}` |" not in readme]
    assert not missing, f"README configuration table lacks {missing}"


def module_map(text):
    return sorted(re.findall(r"^- (\w+\.py) ", text, re.M))


def test_the_module_maps_name_every_module_of_the_tool():
    modules = sorted(p.name for p in (ROOT / "fabfile").glob("*.py") if p.name != "__init__.py")
    assert module_map((ROOT / "README.md").read_text()) == modules
    assert module_map((ROOT / "fabfile" / "__init__.py").read_text()) == modules


def test_the_readme_settings_table_is_the_one_the_settings_generate():
    import yaml

    from fabfile.config import settings_table
    defaults = yaml.safe_load((ROOT / "invoke.yaml").read_text())["deploy"]
    assert settings_table(defaults) in (ROOT / "README.md").read_text(), \
        "README's settings table is not what the settings generate: paste the output of " \
        "fabfile.config.settings_table(<invoke.yaml deploy defaults>) over it"
