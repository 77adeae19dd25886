"""The package as a user gets it: a wheel built from the sdist, installed into a fresh virtual
environment, trains and generates from a directory that is not the source tree."""
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(args, **kwargs):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kwargs)
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _declared_dependencies() -> list[str]:
    """The names in pyproject.toml's [project] dependencies, sorted."""
    import tomllib                      # Python 3.11+, what the suite runs on

    with open(REPO / "pyproject.toml", "rb") as file:
        project = tomllib.load(file)["project"]
    return sorted(re.split(r"[<>=!~ ;\[]", spec, maxsplit=1)[0] for spec in project["dependencies"])


@pytest.mark.slow
def test_the_wheel_installs_trains_and_generates_in_a_fresh_environment(tmp_path):
    pytest.importorskip("build", reason="python -m build is needed (make .venv/.test installs it)")
    dist = tmp_path / "dist"
    # sdist first, then the wheel from the unpacked sdist: what make wheel does, and what proves the
    # sdist complete; --no-isolation builds with this environment's setuptools, offline
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, REPO], cwd=tmp_path)
    # from here on nothing may reach the source tree
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SCRATCHRNN_NO_KERNEL")}
    (wheel,) = dist.glob("scratchrnn-*.whl")
    assert len(list(dist.glob("scratchrnn-*.tar.gz"))) == 1
    # the kernels are one extension module for CPython's limited API from 3.11 on: the wheel says so
    # (cp311-abi3: 3.11 and every later CPython), on the platform the module was built for
    python_tag, abi_tag, platform_tag = wheel.name[:-len(".whl")].split("-")[-3:]
    if sys.version_info >= (3, 11) and (shutil.which("cc") or shutil.which("gcc")):
        assert (python_tag, abi_tag) == ("cp311", "abi3"), wheel.name
    assert platform_tag == sysconfig.get_platform().replace("-", "_").replace(".", "_"), wheel.name

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
         env=env)
    # the dependencies (numpy, matplotlib, ...) are lent from this environment (a .pth file, which does
    # not carry this environment's editable scratchrnn along) rather than downloaded: the test runs
    # offline in seconds; that the wheel asks for them is checked from its metadata against
    # pyproject.toml, and pip check confirms that what is lent satisfies it
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "_lent_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "check"], env=env)

    work = tmp_path / "elsewhere"
    work.mkdir()
    code = ("import importlib.metadata as m, scratchrnn; print(scratchrnn.__file__); "
            "import re; print(sorted(re.split(r'[<>=!~ ;\\[]', r, maxsplit=1)[0] "
            "for r in m.requires('scratchrnn') if 'extra ==' not in r))")
    probe = _run([python, "-c", code], env=env, cwd=work).stdout.splitlines()
    assert Path(probe[0]).is_relative_to(site), probe          # the installed copy, not the source tree
    assert probe[1] == str(_declared_dependencies())
    assert (site / "scratchrnn-0.1.0.dist-info" / "licenses" / "LICENSE").is_file()
    # the kernels: one module for CPython's limited API (3.11 on), which needs no compiler to run
    if sys.version_info >= (3, 11) and (shutil.which("cc") or shutil.which("gcc")):
        assert (site / "scratchrnn" / "kernels" / "_kernels.abi3.so").is_file()
        assert "-cp311-abi3-" in wheel.name, wheel.name

    scratchrnn = venv / "bin" / "scratchrnn"
    version = _run([scratchrnn, "--version"], env=env, cwd=work).stdout
    if shutil.which("cc") or shutil.which("gcc"):
        assert "compiled kernels: on" in version, version
    (work / "text.txt").write_text("the time traveller was expounding a recondite matter to us\n" * 12)
    _run([scratchrnn, "train", "--data", "text.txt", "--out", "run", "--epochs", "2", "--hidden", "16",
          "--batch-size", "4", "--num-steps", "5", "--no-progress", "--predict-every", "0"], env=env, cwd=work)
    assert (work / "run" / "perplexity.png").is_file()
    text = _run([scratchrnn, "generate", "run", "--prefix", "time traveller", "--num-chars", "20"],
                env=env, cwd=work).stdout
    assert text.startswith("time traveller") and len(text.strip()) == len("time traveller") + 20
    # the explorer's page ships in the wheel, and explain needs nothing of the serve extra
    for asset in ("index.html", "app.js", "charts.js", "style.css"):
        assert (site / "scratchrnn" / "explorer" / asset).is_file(), asset
    _run([scratchrnn, "explain", "run", "--text", "text.txt", "--html", "run.html", "--max-chars", "40"],
         env=env, cwd=work)
    assert "scratchrnn explorer" in (work / "run.html").read_text(encoding="utf-8")
