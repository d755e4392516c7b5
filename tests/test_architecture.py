"""The rules of ../shared/ARCHITECTURE.md that a program can check, read from the source (tests/architecture.py)."""

from __future__ import annotations

import subprocess
import sys

from architecture import ROOT, import_cycles, import_edges, long_modules, module_files, third_party_importers


def test_a_hand_made_cycle_is_found(tmp_path):
    """The checker itself, on a known ground truth: a -> b -> c -> a (c's import inside a function), d -> a."""
    package = tmp_path / "first_demo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from first_demo import b\n")
    (package / "b.py").write_text("from first_demo.c import thing\n")
    (package / "c.py").write_text("def thing():\n    from . import a\n")
    (package / "d.py").write_text("import first_demo.a\n")
    edges = import_edges(tmp_path)
    assert import_cycles(edges) == [["first_demo.a", "first_demo.b", "first_demo.c"]]
    assert [e.lazy for e in edges if e.source == "first_demo.c"] == [True]


def test_no_import_cycles_not_even_inside_functions():
    assert import_cycles(import_edges()) == []


def test_no_module_over_400_lines():
    assert long_modules(400) == {}


def test_only_the_bridge_imports_lm_eval():
    outside = {module: lines for module, lines in third_party_importers("lm_eval").items()
               if not module.startswith("first_eval.lm_eval_bridge")}
    assert outside == {}


def test_first_eval_imports_neither_first_distill_nor_first_demo():
    wrong = [e for e in import_edges() if e.source.startswith("first_eval")
             and e.target.split(".")[0] in ("first_distill", "first_demo")]
    assert wrong == []


def test_the_store_knows_nothing_above_it():
    """store/ is the on-disk format alone: numpy and the standard library, plus first_eval's leaf error module."""
    allowed_first_party = ("first_distill.store", "first_eval.errors")
    wrong = [e for e in import_edges() if e.source.startswith("first_distill.store")
             and not e.target.startswith(allowed_first_party)]
    assert wrong == []
    for heavy in ("torch", "transformers", "lm_eval", "jinja2", "matplotlib", "typer"):
        assert not [m for m in third_party_importers(heavy) if m.startswith("first_distill.store")], heavy


def test_pure_cores_import_no_model_code_cli_or_renderers():
    cores = ("first_eval.metrics", "first_eval.calibrators", "first_distill.losses", "first_distill.store")
    for heavy in ("lm_eval", "jinja2", "matplotlib", "typer", "transformers"):
        assert not [m for m in third_party_importers(heavy) if m.startswith(cores)], heavy
    wrong = [e for e in import_edges() if e.source.startswith(cores) and (e.target.endswith(".cli")
                                                                        or "lm_eval_bridge" in e.target)]
    assert wrong == []


def test_first_distill_uses_the_bridge_through_its_public_api():
    wrong = [f"{e.source}:{e.line} -> {e.target}" for e in import_edges()
             if e.source.startswith(("first_distill", "first_demo")) and e.target.startswith("first_eval.lm_eval_bridge.")]
    assert wrong == []


def test_help_imports_no_heavy_library():
    """`first --help` stays instant: importing the CLI (and its plugins' registration) loads no torch or lm-eval."""
    code = ("import sys; from first_eval.cli import _register_plugins, app; _register_plugins(); "
            "print(sorted(m for m in ('torch', 'transformers', 'lm_eval', 'matplotlib', 'jinja2') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert loaded.strip() == "[]"


def test_every_package_folder_is_read():
    assert {name.split(".")[0] for name in module_files()} == {"first_eval", "first_distill", "first_demo"}
