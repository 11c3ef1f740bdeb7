"""Issue 28, item 6: the README's first command installs the ``relax`` extra, and that extra holds CHGNet, so
``dpcdvae relax`` and notebook 05 work after it."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_first_command_installs_the_relax_extra():
    text = (REPO / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)\n```", text, re.S).group(1)
    assert 'pip install -e ".[relax]"' in first, first
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("chgnet") for req in extras["relax"])
    assert "the notebooks need nothing more" not in text.lower().split("relax")[0]
