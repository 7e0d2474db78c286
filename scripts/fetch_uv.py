"""Install the `uv` binary from its PyPI wheel, with the standard library only.

Used by `taskw` when the venv has no pip (Debian's python3 without python3-venv):
    python fetch_uv.py 'uv>=0.13.9,<0.14' .venv/bin

Reads the PEP 691 JSON simple index (PIP_INDEX_URL, else PyPI), picks the newest
version inside the range with a wheel for this platform, checks its sha256 and copies
`uv` (and `uvx`) out of it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import sys
import urllib.request
import zipfile

INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:4])


def in_range(version: str, spec: str) -> bool:
    ops = {
        ">=": lambda a, b: a >= b,
        ">": lambda a, b: a > b,
        "<=": lambda a, b: a <= b,
        "<": lambda a, b: a < b,
        "==": lambda a, b: a == b,
    }
    v = parse_version(version)
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(>=|<=|==|>|<)\s*([\d.]+)\s*", part)
        if not m:
            raise SystemExit(f"fetch_uv: unsupported version clause {part!r}")
        if not ops[m.group(1)](v, parse_version(m.group(2))):
            return False
    return True


def platform_tags() -> list[str]:
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    if sys.platform == "darwin":
        return ["macosx"]
    libc, _ = platform.libc_ver()
    family = "manylinux" if libc == "glibc" else "musllinux"
    return [f"{family}_{arch}", f"{family}2014_{arch}"]


def matches(filename: str, tags: list[str]) -> bool:
    if not filename.endswith(".whl"):
        return False
    plat = filename[:-4].split("-")[-1]
    for tag in plat.split("."):
        for want in tags:
            if want == "macosx" and tag.startswith("macosx"):
                return True
            family, _, arch = want.partition("_")
            if tag.startswith(family) and tag.endswith(arch):
                return True
    return False


def main() -> None:
    spec_arg, bindir = sys.argv[1], sys.argv[2]
    spec = spec_arg.removeprefix("uv").strip()
    req = urllib.request.Request(
        f"{INDEX}/uv/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        index = json.load(resp)
    tags = platform_tags()
    candidates = []
    for f in index["files"]:
        name = f["filename"]
        if f.get("yanked") or not matches(name, tags):
            continue
        version = name.split("-")[1]
        if in_range(version, spec):
            candidates.append((parse_version(version), name, f))
    if not candidates:
        raise SystemExit(f"fetch_uv: no uv wheel for {tags} within {spec!r} at {INDEX}")
    _, name, f = max(candidates, key=lambda c: c[0])
    print(f"fetch_uv: downloading {name}", file=sys.stderr)
    with urllib.request.urlopen(f["url"], timeout=300) as resp:
        data = resp.read()
    want = f.get("hashes", {}).get("sha256")
    if want and hashlib.sha256(data).hexdigest() != want:
        raise SystemExit(f"fetch_uv: sha256 mismatch for {name}")
    os.makedirs(bindir, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        for member in wheel.namelist():
            base = member.rsplit("/", 1)[-1]
            if "/scripts/" in member and base in ("uv", "uvx"):
                target = os.path.join(bindir, base)
                with open(target, "wb") as out:
                    out.write(wheel.read(member))
                os.chmod(target, 0o755)
    if not os.path.exists(os.path.join(bindir, "uv")):
        raise SystemExit(f"fetch_uv: {name} has no uv binary")


if __name__ == "__main__":
    main()
