"""The layering: who may import whom (import-linter), and who may read the environment.

The contracts live in pyproject.toml (``[tool.importlinter]``) and run in ``invoke
lint``; here they run on the real tree, and on a copy with deliberately wrong imports
to show that each contract catches what it is for.
"""

import io
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

from helpers import ROOT
from importlinter.application import use_cases
from importlinter.configuration import configure

SOURCES = sorted((ROOT / "packages").glob("*/src"))
# Front ends: they build the one configuration from the environment. Everything else
# takes it as an argument.
FRONT_ENDS = {
    # Alembic's own command line: env.py builds a configuration when none was handed over.
    Path("shared_db/migrations/env_runner.py"),
    # The development database provider that env.py asks (Alembic's command line again).
    Path("db_devtools/provisioning/provider.py"),
    # The pytest plugin of the runtime (its own TEST_DATABASE_SERVER_URL).
    Path("shared_db/pytest_plugin.py"),
}
# Reading a setting. Handing the whole environment on to a child process
# (``os.environ | {...}``) is not reading it.
READS = re.compile(r"\bos\.getenv\b|\bos\.environ\b(?!\s*\|)")


def code_lines(source: str) -> dict[int, str]:
    """Each line's code, strings and comments left out."""
    lines: dict[int, list[str]] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.NAME, tokenize.OP):
            lines.setdefault(token.start[0], []).append(token.string)
    return {number: "".join(parts) for number, parts in lines.items()}


def test_the_import_contracts_hold() -> None:
    # The use case, not the command line: `importlinter.cli` reconfigures logging
    # (dictConfig), which would disable every logger already made in this process.
    configure()
    kept = use_cases.lint_imports(
        config_filename=str(ROOT / "pyproject.toml"), cache_dir=None, no_logo=True
    )
    assert kept


def test_each_contract_catches_a_wrong_import(tmp_path: Path) -> None:
    for source in SOURCES:
        shutil.copytree(source, tmp_path / source.parent.name, dirs_exist_ok=True)
    copies = [tmp_path / source.parent.name for source in SOURCES]
    wrong = {
        # A service that provisions a database, and that uses another service's models.
        "scoring_engine/scoring_engine/api.py": "from db_devtools.provisioning import resolve\n"
        "from shared_db.models.api_gateway import ApiKey\n",
        # The runtime importing Invoke, and the dev tooling's configuration.
        "shared_db/shared_db/runner.py": "import invoke\n",
        "shared_db/shared_db/status.py": "from db_devtools.config import DevConfig\n",
        # Provisioning that reaches up into the authoring workflow.
        "db_devtools/db_devtools/provisioning/local.py": "from db_devtools.workflow import lint\n",
    }
    for relative, line in wrong.items():
        path = tmp_path / relative
        path.write_text(line + path.read_text())
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "lint-imports"),
            "--config",
            str(ROOT / "pyproject.toml"),
            "--no-cache",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": ":".join(map(str, copies)), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    broken = {line.removesuffix(" BROKEN") for line in output.splitlines() if "BROKEN" in line}
    assert broken == {
        "The Invoke front end over the dev tooling over the runtime",
        "The runtime imports no developer tooling",
        "A service imports the runtime only: no dev tooling, no other service",
        "scoring_engine uses its own models only",
        "Inside the dev tooling, the workflow may provision databases, never the reverse",
    }, output


def test_only_front_ends_read_the_environment() -> None:
    readers = []
    for source in SOURCES:
        for path in sorted(source.rglob("*.py")):
            relative = path.relative_to(source)
            if relative.parts[0] == "dev_tasks" or relative in FRONT_ENDS:
                continue
            for number, code in code_lines(path.read_text()).items():
                if READS.search(code):
                    readers.append(f"{relative}:{number}: {code}")
    assert readers == [], "library modules read the environment:\n" + "\n".join(readers)


def test_the_check_sees_a_read() -> None:
    found = code_lines('url = os.environ.get("DATABASE_URL")  # os.getenv\n"""os.environ"""\n')
    assert [number for number, code in found.items() if READS.search(code)] == [1]
    assert READS.search(code_lines('x = os.getenv("X")')[1])
    assert not READS.search(code_lines("run(env=os.environ | extra)")[1])
