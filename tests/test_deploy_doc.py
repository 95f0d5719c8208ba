"""docs/deploy.md names every setting, with the table the code's comments generate, and the README points to it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from diarist.settings import Settings

ROOT = Path(__file__).parents[1]


def settings_table():
    spec = importlib.util.spec_from_file_location("settings_table", ROOT / "scripts" / "settings_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_setting_is_in_the_deploy_doc():
    doc = (ROOT / "docs" / "deploy.md").read_text()
    missing = [name for name in Settings.model_fields if f"| `DIARIST_{name.upper()}` |" not in doc]
    assert not missing, f"settings missing from docs/deploy.md (run scripts/settings_table.py): {missing}"


def test_the_settings_table_is_what_the_code_says():
    table = settings_table()
    doc = (ROOT / "docs" / "deploy.md").read_text()
    assert table.with_table(doc) == doc, "docs/deploy.md's settings table is stale: run scripts/settings_table.py"
    described = {name: text for name, _, text in table.fields(table.SOURCE)}
    assert list(described) == list(Settings.model_fields)
    assert [name for name, text in described.items() if not text] == [], "every setting needs a comment"


def test_the_settings_table_shows_values_not_code():
    rows = settings_table().table().splitlines()[2:]
    defaults = {row.split(" | ")[0].strip("| `"): row.split(" | ")[2] for row in rows}
    assert [d for d in defaults.values() if re.search(r"\(\)|GIB|\d \* \d|usable_cores|DEFAULT_", d)] == []
    assert defaults["max_json_bytes"] == "`1310720` (1.25 MiB)" and defaults["max_input_bytes"].endswith("(1 GiB)")
    assert defaults["device"] == "`'auto'`" and defaults["webhook_retry_delays"] == "`[0.0, 60.0, 300.0]`"
    # Defaults computed on each machine point to the text, which says how.
    assert defaults["workers"] == "this machine's (see →)"


def test_the_readme_points_to_the_deploy_doc():
    readme = (ROOT / "README.md").read_text()
    assert "## Scale out" in readme and "docs/deploy.md" in readme.split("## Scale out", 1)[1]
