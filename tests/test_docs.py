"""The documentation: README.md stays short and points into docs/, the tables of figures in docs/generated/ are what
docs/scripts/gen_tables.py makes from the JSON in reports/ (regenerating changes nothing), and the MkDocs site builds
with --strict, offline (no plugin that fetches from the network)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
GENERATED = DOCS / "generated"
GEN = DOCS / "scripts" / "gen_tables.py"
INCLUDE = re.compile(r'^--8<-- "([^"]+)"$', re.MULTILINE)
README_MAX_LINES = 200

pytestmark = pytest.mark.timeout(300)


def run(*cmd: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=240, check=False, env=env)


def nav_pages(nav: list) -> list[str]:
    pages: list[str] = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def load_mkdocs_yml() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    # mkdocs.yml may use MkDocs' own tags (!ENV, !relative); none of them matter to these checks
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load((REPO / "mkdocs.yml").read_text(), Loader=Loader)  # noqa: S506 - a SafeLoader subclass


def test_the_committed_tables_are_what_the_reports_give() -> None:
    result = run(sys.executable, GEN, "--check")
    assert result.returncode == 0, f"{result.stderr}\nregenerate: .venv/bin/python docs/scripts/gen_tables.py and commit docs/generated/"


def test_the_check_fails_on_an_edited_or_a_missing_table(tmp_path: Path) -> None:
    out = tmp_path / "generated"
    written = run(sys.executable, GEN, "--out", out)
    assert written.returncode == 0, written.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in GENERATED.iterdir())
    assert run(sys.executable, GEN, "--check", "--out", out).returncode == 0
    table = out / "full-scale.md"
    # a figure copied by hand that no longer matches its report: the shipped recipe's int8 score changed
    table.write_text(table.read_text().replace("| 0.9054 |", "| 0.9055 |", 1))
    stale = run(sys.executable, GEN, "--check", "--out", out)
    assert stale.returncode == 1 and "full-scale.md" in stale.stderr, stale.stderr
    table.unlink()
    assert run(sys.executable, GEN, "--check", "--out", out).returncode == 1


def test_every_generated_table_is_included_and_every_include_exists() -> None:
    included: set[str] = set()
    for page in DOCS.glob("*.md"):
        included |= set(INCLUDE.findall(page.read_text()))
    generated = {p.name for p in GENERATED.glob("*.md")}
    assert included == generated, f"included but not generated: {sorted(included - generated)}; generated, not included: {sorted(generated - included)}"


def test_every_page_is_in_the_nav_and_no_plugin_needs_the_network() -> None:
    config = load_mkdocs_yml()
    pages = set(nav_pages(config["nav"]))
    on_disk = {p.name for p in DOCS.glob("*.md")}
    assert pages == on_disk, f"not in the nav: {sorted(on_disk - pages)}; in the nav, no file: {sorted(pages - on_disk)}"
    plugins = [next(iter(p)) if isinstance(p, dict) else p for p in config.get("plugins", [])]
    assert set(plugins) <= {"search"}, f"plugins that may fetch from the network (social cards, fonts, privacy): {plugins}"
    assert config["theme"]["name"] == "material" and config["theme"].get("font") is False  # no Google Fonts


def test_the_readme_is_short_and_its_links_into_docs_exist() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", readme)
    assert links, "the README links into docs/"
    missing = sorted({link for link in links if not (REPO / link).exists()})
    assert not missing, f"README links to missing files: {missing}"
    for command in ("bash tests/setup.sh", ".venv/bin/python -m pytest", "## Run on a Raspberry Pi", "retrain-model", "--collect", "--http"):
        assert command in readme, command
    set_up = readme.split("```bash\n", 1)[1].split("```", 1)[0]  # the first block: set up and run, set up and test
    assert "bash tests/setup.sh" in set_up and ".venv/bin/python -m pytest" in set_up
    assert "sudo" not in set_up, "the set-up commands run as root in a container: tests/setup.sh uses sudo only when not root"


def test_the_site_builds_strict_and_offline(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    assert mkdocs, "mkdocs not found: bash tests/setup.sh installs the dev extra (mkdocs, mkdocs-material)"
    site = tmp_path / "site"
    result = run(mkdocs, "build", "--strict", "--config-file", REPO / "mkdocs.yml", "--site-dir", site)
    assert result.returncode == 0, result.stdout + result.stderr
    full_scale = (site / "full-scale" / "index.html").read_text()
    assert "0.9054" in full_scale and "--8&lt;--" not in full_scale  # the generated table is included, not its marker
    assert (site / "images" / "live.png").is_file()
    for page in site.rglob("*.html"):
        external = re.findall(r'(?:src|href)="(https?://[^"]+\.(?:css|js|woff2?))"', page.read_text())
        assert not external, f"{page.relative_to(site)} loads {external}"
