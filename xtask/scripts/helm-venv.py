#!/usr/bin/env python3
"""Create (once) the Python virtual environment that carries real Helm.

Helm is not packaged for these machines; PyPI's helm-python-sdk ships Helm
v4's engine as a shared library with Python bindings. This script makes a
virtual environment with it and prints the environment's python executable.

Usage: helm-venv.py [VENV_DIR]   (default: ~/.cache/arc-rs/helm-venv)

It is idempotent: an environment whose marker file names the pinned version
is reused without touching the network.
"""

import fcntl
import os
import subprocess
import sys
import venv

PACKAGE = "helm-python-sdk"
VERSION = "0.2.2"
MARKER = ".arc-rs-helm-sdk"


def python_of(venv_dir: str) -> str:
    return os.path.join(venv_dir, "bin", "python")


def is_ready(venv_dir: str) -> bool:
    marker = os.path.join(venv_dir, MARKER)
    if not os.path.isfile(marker) or not os.path.isfile(python_of(venv_dir)):
        return False
    with open(marker, encoding="utf-8") as f:
        return f.read().strip() == f"{PACKAGE}=={VERSION}"


def check_import(python: str) -> None:
    probe = subprocess.run(
        [python, "-c", "import helm_python.chart"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        sys.exit(
            f"error: {PACKAGE} {VERSION} installed but `import helm_python.chart` failed:\n"
            f"{probe.stderr.strip()}\nfix: delete the environment and run again"
        )


def create(venv_dir: str) -> None:
    os.makedirs(os.path.dirname(venv_dir) or ".", exist_ok=True)
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    except Exception as err:  # noqa: BLE001 - any failure is reported the same way
        sys.exit(
            f"error: creating the virtual environment {venv_dir} failed: {err}\n"
            "fix: install Python's venv and ensurepip modules (Debian: apt-get install python3-venv)"
        )
    pip = [python_of(venv_dir), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    done = subprocess.run(pip + [f"{PACKAGE}=={VERSION}"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(
            f"error: `pip install {PACKAGE}=={VERSION}` into {venv_dir} failed:\n"
            f"{done.stderr.strip()}\nfix: make sure PyPI is reachable, then run again"
        )
    check_import(python_of(venv_dir))
    with open(os.path.join(venv_dir, MARKER), "w", encoding="utf-8") as f:
        f.write(f"{PACKAGE}=={VERSION}\n")


def main() -> None:
    default = os.path.join(os.path.expanduser("~"), ".cache", "arc-rs", "helm-venv")
    venv_dir = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else default)
    os.makedirs(os.path.dirname(venv_dir), exist_ok=True)
    # Test binaries run in parallel: one creates, the others wait and reuse.
    with open(venv_dir + ".lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_ready(venv_dir):
            create(venv_dir)
    print(python_of(venv_dir))


if __name__ == "__main__":
    main()
