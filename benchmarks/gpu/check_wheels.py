"""Check the carried wheels against the GPU machine's packages, with no GPU machine.

    python benchmarks/gpu/check_wheels.py check .whl        # every requirement met?
    python benchmarks/gpu/check_wheels.py fake-site /tmp/device-site

``check``: each wheel's requirements (markers read as on the machine: CPython 3.12, Linux,
x86-64; extras followed where a requirement asks for them) must be met by another carried
wheel (its version checked) or by a package of the machine's image
(``device_packages.txt``, its version checked where the list gives one). Two versions of
one package stop the machine's install, so they fail the check too. Exit 1 on any problem.

``fake-site DIR``: links into DIR the distributions of this interpreter that the machine's
image also holds, with their own requirements here, and nothing else. ``python -S`` (no
site-packages) with ``PYTHONPATH=<wheels>:<repo>:DIR`` then sees what the machine would (at
this machine's versions), so a run there proves the carried wheels complete (``run.sh`` in
dry mode).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata as metadata
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

HERE = Path(__file__).resolve().parent
# the machine's interpreter, for markers
ENVIRONMENT = {"python_version": "3.12", "python_full_version": "3.12.3",
               "sys_platform": "linux", "platform_system": "Linux",
               "platform_machine": "x86_64", "os_name": "posix",
               "implementation_name": "cpython", "platform_python_implementation": "CPython"}


@dataclasses.dataclass(frozen=True)
class Wheel:
    name: str  # canonical
    version: Version
    requires: tuple[Requirement, ...]
    file: str


def read_wheel(path: Path) -> Wheel:
    with zipfile.ZipFile(path) as archive:
        meta = next(n for n in archive.namelist()
                    if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        headers = Parser().parsestr(archive.read(meta).decode("utf-8"), headersonly=True)
    return Wheel(canonicalize_name(headers["Name"]), Version(headers["Version"]),
                 tuple(Requirement(r) for r in headers.get_all("Requires-Dist") or ()),
                 path.name)


def device_packages(path: Path = HERE / "device_packages.txt") -> dict[str, Version | None]:
    """The machine's packages: canonical name -> version (None where the list has none)."""
    found: dict[str, Version | None] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            found[canonicalize_name(name)] = Version(version) if version else None
    return found


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**ENVIRONMENT, "extra": extra})
               for extra in extras | {""})


def problems(wheels: list[Wheel], device: dict[str, Version | None]) -> tuple[list[str],
                                                                               list[str]]:
    """(problems, notes): unmet or duplicated requirements; packages met by the machine at a
    version the list does not give."""
    by_name: dict[str, Wheel] = {}
    found, notes = [], set()
    for wheel in wheels:
        if wheel.name in by_name:
            found.append(f"two wheels of {wheel.name}: {by_name[wheel.name].file}, {wheel.file}")
        by_name[wheel.name] = wheel
    todo = [(wheel, set()) for wheel in wheels]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        wheel, extras = todo.pop()
        if (wheel.name, frozenset(extras)) in seen:
            continue
        seen.add((wheel.name, frozenset(extras)))
        for requirement in wheel.requires:
            if not _applies(requirement, extras):
                continue
            name = canonicalize_name(requirement.name)
            asked = f"{requirement} (for {wheel.name})"
            if name in by_name:
                if not requirement.specifier.contains(by_name[name].version, prereleases=True):
                    found.append(f"{asked}: the carried wheel is {by_name[name].version}")
                todo.append((by_name[name], set(requirement.extras)))
            elif name not in device:
                found.append(f"{asked}: neither carried nor on the machine")
            elif device[name] is None:
                if str(requirement.specifier) or requirement.extras:
                    notes.add(f"{name}{requirement.extras or ''}"
                              f"{requirement.specifier}: on the machine, version not listed")
            elif not requirement.specifier.contains(device[name], prereleases=True):
                found.append(f"{asked}: the machine has {device[name]}")
    # a wheel reached with and without an extra is read twice: each problem once
    return list(dict.fromkeys(found)), sorted(notes)


def _local_closure(names: set[str]) -> dict[str, metadata.Distribution]:
    """This interpreter's distributions named, and what they require in turn (here)."""
    found: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[name] = dist
        for line in dist.requires or ():
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return found


def fake_site(target: Path, device: dict[str, Version | None]) -> int:
    """Link into ``target`` this interpreter's distributions that the machine also has, with
    what they require here (the local versions' needs: huggingface_hub 2 here needs httpx2
    where the machine's 1.33 needs httpx), and nothing else."""
    target.mkdir(parents=True, exist_ok=True)
    linked = 0
    for dist in _local_closure(set(device)).values():
        if not dist.files:
            continue
        root = Path(dist.locate_file(""))
        for top in {f.parts[0] for f in dist.files if f.parts and f.parts[0] != ".."}:
            source, link = root / top, target / top
            if source.exists() and not link.exists() and not top.endswith(".pth"):
                link.symlink_to(source)
                linked += 1
    return linked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("check", "fake-site"))
    parser.add_argument("folder", type=Path, help="the wheels (check) or the site (fake-site)")
    args = parser.parse_args(argv)
    device = device_packages()
    if args.command == "fake-site":
        print(f"{fake_site(args.folder, device)} entries linked into {args.folder}")
        return 0
    wheels = [read_wheel(p) for p in sorted(args.folder.glob("*.whl"))]
    if not wheels:
        parser.error(f"no wheels in {args.folder}: run benchmarks/gpu/prepare.sh first")
    found, notes = problems(wheels, device)
    for note in notes:
        print(f"note: {note}")
    for problem in found:
        print(f"PROBLEM: {problem}")
    print(f"{len(wheels)} wheels, {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
