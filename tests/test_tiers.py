"""The test tiers (the README, after its test command) stay true: whatever needs the shared services
carries `fleet`, the browser tests carry `browser`, and the fast tier still reaches every other module."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from . import services

ROOT = Path(__file__).parents[1]
FLEET_MODULES = {"tests/test_fleet.py", "tests/test_fleet_chaos.py", "tests/test_postgres.py"}
BROWSER_MODULES = {"tests/test_web.py", "tests/test_web_live.py"}
TIERED = {"slow", "fleet", "browser"}  # the fast tier is `-m "not slow and not fleet and not browser"`

# Collects the whole suite with pytest's own API in a fresh interpreter and writes each test's marks
# (its own, its module's and its fixture params') to the file named by argv[1].
PROBE = """
import json, sys
import pytest

class Probe:
    def pytest_collection_finish(self, session):
        marks = {item.nodeid: sorted({m.name for m in item.iter_markers()}) for item in session.items}
        with open(sys.argv[1], "w") as out:
            json.dump(marks, out)

sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider"], plugins=[Probe()]))
"""


@pytest.fixture(scope="module")
def marks(tmp_path_factory) -> dict[str, set[str]]:
    """Every collected test's node id and the names of its marks."""
    path = tmp_path_factory.mktemp("tiers") / "marks.json"
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert probe.returncode == 0, probe.stdout[-4000:] + probe.stderr[-4000:]
    return {nodeid: set(names) for nodeid, names in json.loads(path.read_text()).items()}


def module(nodeid: str) -> str:
    return nodeid.split("::")[0]


def test_every_test_of_the_fleet_modules_is_marked_fleet(marks):
    fleet = {nodeid: names for nodeid, names in marks.items() if module(nodeid) in FLEET_MODULES}
    assert {module(nodeid) for nodeid in fleet} == FLEET_MODULES
    assert [nodeid for nodeid, names in fleet.items() if "fleet" not in names] == []


def test_every_celery_or_postgresql_run_of_a_parametrised_test_is_marked_fleet(marks):
    runs = [nodeid for nodeid in marks if re.search(r"\[.*\b(celery|postgres(ql)?)\b", nodeid)]
    assert any("[celery" in nodeid for nodeid in runs) and any("[postgresql" in nodeid for nodeid in runs)
    assert [nodeid for nodeid in runs if "fleet" not in marks[nodeid]] == []


def test_every_browser_test_is_marked_browser(marks):
    browser = [nodeid for nodeid in marks if module(nodeid) in BROWSER_MODULES]
    if not browser:
        pytest.skip("tests/test_web.py collects nothing without Chromium (scripts/setup --browser)")
    assert [nodeid for nodeid in browser if "browser" not in marks[nodeid]] == []


def test_the_fast_tier_runs_some_of_every_other_test_module(marks):
    modules = {f"tests/{path.name}" for path in (ROOT / "tests").glob("test_*.py")}
    fast = {module(nodeid) for nodeid, names in marks.items() if not names & TIERED}
    assert sorted(modules - FLEET_MODULES - BROWSER_MODULES - fast) == []


def test_a_test_without_the_fleet_mark_cannot_reach_a_service():
    with pytest.raises(pytest.fail.Exception, match="mark it `fleet`"):
        services.require("postgresql")
