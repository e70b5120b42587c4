"""The import rules of docs/ARCHITECTURE.md: `lint-imports` keeps the contracts in pyproject.toml's
``[tool.importlinter]`` (layers of edge_app and converter, the device runtime never importing the converter,
TensorFlow or Keras), the rules bite on a real import of this tree, and importing any edge_app module never loads
the converter (tests/test_quality.py checks the same for TensorFlow)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LINT_IMPORTS = BIN / "lint-imports"


def lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    # --no-cache: no .import_linter_cache/ left in the tree
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", *args], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


def importlinter_config() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


def write_config(path: Path, config: dict[str, Any]) -> Path:
    lines = ["[tool.importlinter]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in config.items() if key != "contracts"]
    for contract in config["contracts"]:
        lines += ["", "[[tool.importlinter.contracts]]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in contract.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_import_contracts_are_kept() -> None:
    result = lint_imports()
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    contracts = importlinter_config()["contracts"]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in out, out


def test_the_contracts_name_the_rules_of_the_architecture_page() -> None:
    config = importlinter_config()
    assert set(config["root_packages"]) == {"edge_app", "converter"}
    by_type: dict[str, list[dict[str, Any]]] = {}
    for contract in config["contracts"]:
        by_type.setdefault(contract["type"], []).append(contract)
    assert any(c["source_modules"] == ["edge_app"] and {"converter", "tensorflow", "keras"} <= set(c["forbidden_modules"])
               for c in by_type["forbidden"])
    containers = {tuple(c.get("containers", ())) for c in by_type["layers"]}
    assert {("edge_app",), ("converter",)} <= containers
    # every part named on the architecture page (as a code span) is in the edge_app and converter layers, and vice versa
    page = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    for contract in by_type["layers"]:
        if contract.get("containers") in (["edge_app"], ["converter"]):
            root = contract["containers"][0]
            assert contract.get("exhaustive") is True
            for layer in contract["layers"]:
                for part in layer.replace(":", "|").split("|"):
                    assert f"`{root}.{part.strip()}`" in page or f"`{root}/{part.strip()}" in page, f"{root}.{part.strip()} is not on docs/ARCHITECTURE.md"


def test_the_layers_catch_an_upward_import(tmp_path: Path) -> None:
    """Without its ignore_imports, the edge_app layers contract breaks on the one upward import the tree has (the
    `edge-app review` command, inside edge_app/review/__init__.py, building the web application): the check sees
    imports made inside functions, and the ignore list is not hiding anything else."""
    config = importlinter_config()
    contract = next(c for c in config["contracts"] if c["type"] == "layers" and c.get("containers") == ["edge_app"])
    ignored = contract.pop("ignore_imports")
    assert ignored and all(line.startswith("edge_app.review -> edge_app.web") for line in ignored)
    config["contracts"] = [contract]
    result = lint_imports("--config", str(write_config(tmp_path / "contracts.toml", config)))
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Contracts: 0 kept, 1 broken." in out, out
    broken = {line.split("->")[1].split("(")[0].strip() for line in out.splitlines() if line.startswith("- edge_app.review -> ")}
    assert broken == {line.split("->")[1].strip() for line in ignored}, out


def test_importing_edge_app_never_loads_the_converter() -> None:
    code = (
        "import sys, importlib, pkgutil, edge_app\n"
        "for m in pkgutil.walk_packages(edge_app.__path__, 'edge_app.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(len([n for n in sys.modules if n.startswith('edge_app.')]))\n"
        "print(','.join(sorted(n for n in sys.modules if n == 'converter' or n.startswith('converter.'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    count, converter = result.stdout.splitlines()
    assert int(count) > 50, result.stdout  # the walk did import the whole runtime
    assert converter == "", f"importing edge_app loaded {converter}"
