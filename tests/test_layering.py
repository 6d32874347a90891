"""The packages are layers (ARCHITECTURE.md): every import in src/videomamba, lazy ones inside
functions included, goes to the importer's own layer or one below it."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "videomamba"

LAYER = {
    "fileio": 0, "runtime": 0, "constants": 0,
    "ops": 1,
    "layers": 2,
    "models": 3, "checkpoint": 3, "data": 3,
    "engine": 4,
    "apps": 5, "analysis": 5,
    "commands": 6, "cli": 6, "__init__": 6, "__main__": 6,
}
# within layer 3, data stands apart from the model zoo
FORBIDDEN = {("data", "models"), ("data", "checkpoint"), ("data", "layers"), ("data", "ops")}


def _imports(path: Path):
    """(line, top-level package under videomamba) for every import of videomamba code in ``path``."""
    rel = path.relative_to(SRC)
    here = ["videomamba", *rel.with_suffix("").parts]
    package = here if rel.name == "__init__.py" else here[:-1]
    if rel.name == "__init__.py":
        here = here[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = base + (node.module.split(".") if node.module else [])
            else:
                mod = (node.module or "").split(".")
            if mod[:1] != ["videomamba"]:
                continue
            if len(mod) == 1:                      # from videomamba import create_model, ...
                for a in node.names:
                    yield node.lineno, a.name if a.name in LAYER else "__init__"
            else:
                yield node.lineno, mod[1]
        elif isinstance(node, ast.Import):
            for a in node.names:
                mod = a.name.split(".")
                if mod[0] == "videomamba" and len(mod) > 1:
                    yield node.lineno, mod[1]


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_every_import_respects_the_layers():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        src = _package(path)
        assert src in LAYER, f"{path.relative_to(SRC)}: package {src!r} has no layer; add it to ARCHITECTURE.md and here"
        for line, dst in _imports(path):
            if dst == src:
                continue
            assert dst in LAYER, f"{path.relative_to(SRC)}:{line} imports unknown package {dst!r}"
            if LAYER[dst] > LAYER[src] or (src, dst) in FORBIDDEN:
                bad.append(f"{path.relative_to(SRC)}:{line} ({src}, layer {LAYER[src]}) imports {dst} (layer {LAYER[dst]})")
    assert not bad, "imports that go up a layer:\n" + "\n".join(bad)


def test_the_layers_table_matches_the_architecture_page():
    page = (SRC.parents[1] / "ARCHITECTURE.md").read_text()
    for pkg in LAYER:
        if pkg not in ("__init__", "__main__"):
            assert f"`{pkg}`" in page, f"{pkg} is not on ARCHITECTURE.md"
