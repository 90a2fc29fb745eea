from fabfile.config import SETTINGS
from tests.conftest import ROOT


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    missing = [s.env for s in SETTINGS if f"| `{s.env}` |" not in readme]
    assert not missing, f"README configuration table lacks {missing}"
