"""execution-environment.yml installs remediate with `pip install --no-deps`: its own list of
Python packages must be the project's dependencies, or the image builds and then fails at the
first playbook run. (ansible-builder itself checks the file: see the README's AWX section.)"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_image_installs_exactly_the_projects_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    environment = yaml.safe_load((REPO / "execution-environment.yml").read_text(encoding="utf-8"))
    dependencies = environment["dependencies"]
    installed = [
        *dependencies["python"],
        dependencies["ansible_core"]["package_pip"],
        dependencies["ansible_runner"]["package_pip"],
    ]
    assert sorted(map(_name, installed)) == sorted(map(_name, project["dependencies"]))


def test_every_file_the_image_copies_exists() -> None:
    environment = yaml.safe_load((REPO / "execution-environment.yml").read_text(encoding="utf-8"))
    missing = [
        entry["src"]
        for entry in environment["additional_build_files"]
        if not (REPO / entry["src"]).exists()
    ]
    assert missing == []


def test_ansible_builder_accepts_the_file_and_writes_its_build_context(tmp_path: Path) -> None:
    """`ansible-builder create`: the same validation and build context as `ansible-builder build`,
    without a container runtime (CI has none)."""
    builder = Path(sys.executable).parent / "ansible-builder"
    context = tmp_path / "context"
    done = subprocess.run(
        [str(builder), "create", "-f", "execution-environment.yml", "-c", str(context)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (containerfile,) = [
        path for path in (context / "Containerfile", context / "Dockerfile") if path.exists()
    ]
    steps = containerfile.read_text(encoding="utf-8")
    assert "pip install --no-cache-dir --no-deps /tmp/remediate-src" in steps
    assert "--syntax-check" in steps, "the image checks every playbook as it is built"
    content = context / "_build" / "content"
    assert sorted(path.name for path in (content / "playbooks").glob("*.yml")) == sorted(
        path.name for path in (REPO / "playbooks").glob("*.yml")
    )
    requirements = (context / "_build" / "requirements.txt").read_text(encoding="utf-8")
    assert "pywinrm" in requirements and "paramiko" in requirements
