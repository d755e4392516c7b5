"""The wheel (non-editable install) ships the templates and runs `first` outside the checkout."""

import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path


from first_demo.synthetic import SyntheticTask, write_samples_file

REPO = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts)
        for root in ("first_eval", "first_distill")
        for init in (REPO / root).rglob("__init__.py")
    }
    assert on_disk - listed == set(), "add these packages to [tool.setuptools] packages"


def test_wheel_installs_into_a_fresh_venv_and_renders_a_report(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(REPO), "-w", str(dist)],
                   check=True, cwd=tmp_path, capture_output=True)
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # Dependencies come from the project's venv (a path line in a .pth does not run that venv's editable finder).
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)

    located = subprocess.run([str(python), "-c", "import first_eval; print(first_eval.__file__)"],
                             check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    assert str(venv) in located, located

    first = venv / "bin" / "first"
    help_text = subprocess.run([str(first), "--help"], check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    assert "report" in help_text and "demo" in help_text

    samples = write_samples_file(SyntheticTask("tiny_wheel_task", 60, (2, 3), sharpness=2.0), tmp_path / "samples", seed=0)
    subprocess.run([str(first), "report", "--samples", str(samples), "--output", str(tmp_path / "out"), "--bootstrap", "20"],
                   check=True, capture_output=True, text=True, cwd=tmp_path)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "tiny_wheel_task" in html and "<svg" in html
