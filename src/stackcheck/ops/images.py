"""Build the images the stack builds itself (offline stand-ins, later our own services), each
once per content: a hash of the build context and the base image's id labels the image, and an
image whose label matches is not built again. Builds run in parallel.

The recipe is the build context, unless the Dockerfile lies outside the context: then the context
is a cache generated outside the repository (n8n: .stackcheck/n8n/context, 1.5 GB, filled on the
host by stack/images/n8n/prepare.sh) and the recipe is the Dockerfile's folder (Dockerfile,
prepare.sh with its version pins, package.json, package-lock.json), which determines the cache.
Such a recipe's prepare.sh runs only when its image is to be built; a prepare.sh inside the
context runs before every hash, as it adds to what is hashed.

Run as `python -m stackcheck.ops.images [--jobs N] [compose files...]`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from stackcheck import project_root

LABEL = "org.stackcheck.context"
_FROM = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(?P<image>\S+)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class BuildSpec:
    service: str
    image: str
    context: Path
    dockerfile: str = "Dockerfile"
    args: tuple[tuple[str, str], ...] = ()  # build args, part of what identifies the image

    @property
    def dockerfile_path(self) -> Path:
        return (self.context / self.dockerfile).resolve()

    @property
    def recipe(self) -> Path:
        """What is hashed: the context, or the Dockerfile's folder when that is outside it."""
        context = self.context.resolve()
        dockerfile = self.dockerfile_path
        return context if context in dockerfile.parents else dockerfile.parent

    @property
    def external_context(self) -> bool:
        return self.recipe != self.context.resolve()


def _build_args(raw) -> dict[str, str]:
    if isinstance(raw, list):  # ["KEY=value", ...]
        return dict(item.split("=", 1) for item in raw if "=" in item)
    return {str(k): "" if v is None else str(v) for k, v in (raw or {}).items()}


def specs_from_files(paths: list[Path]) -> list[BuildSpec]:
    """The images a set of compose files builds, merged the way Compose merges them: a later file
    may replace a service's image and add or override build keys and build args (the offline
    override builds the backup image with another PostgreSQL client). One spec per image: two
    services sharing an image build it once."""
    merged: dict[str, dict] = {}
    for path in paths:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for name, svc in (data.get("services") or {}).items():
            svc = svc or {}
            entry = merged.setdefault(name, {"args": {}})
            if svc.get("image"):
                entry["image"] = svc["image"]
            build = svc.get("build")
            if not build:
                continue
            if isinstance(build, str):
                build = {"context": build}
            if "context" in build or "context" not in entry:
                entry["context"] = (path.parent / build.get("context", ".")).resolve()
            if "dockerfile" in build:
                entry["dockerfile"] = build["dockerfile"]
            entry["args"].update(_build_args(build.get("args")))
    out: list[BuildSpec] = []
    for name, e in merged.items():
        if "context" not in e or not e.get("image") or any(o.image == e["image"] for o in out):
            continue
        out.append(
            BuildSpec(
                name,
                e["image"],
                e["context"],
                e.get("dockerfile", "Dockerfile"),
                tuple(sorted(e["args"].items())),
            )
        )
    return out


def specs_from_compose(path: Path) -> list[BuildSpec]:
    """The images one compose file builds (see specs_from_files)."""
    return specs_from_files([path])


def context_hash(context: Path, base_ids: dict[str, str] | None = None) -> str:
    """SHA-256 over every file's relative path, mode and bytes, plus the ids of the base images."""
    h = hashlib.sha256()

    def part(data: bytes) -> None:  # length-prefixed, so file boundaries cannot shift
        h.update(len(data).to_bytes(8, "big") + data)

    files = (p for p in context.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for f in sorted(files):
        part(str(f.relative_to(context)).encode())
        part(oct(f.stat().st_mode & 0o777).encode())
        part(f.read_bytes())
    for name, iid in sorted((base_ids or {}).items()):
        part(f"{name}={iid}".encode())
    return h.hexdigest()[:24]


def base_images(spec: BuildSpec) -> list[str]:
    return _FROM.findall(spec.dockerfile_path.read_text(encoding="utf-8"))


def _inspect(ref: str, fmt: str) -> str | None:
    proc = subprocess.run(
        ["docker", "image", "inspect", "--format", fmt, ref], capture_output=True, text=True
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def prepare(spec: BuildSpec, log_dir: Path) -> None:
    """Run the recipe's prepare.sh, if any: it gathers on the host what a build cannot fetch
    (wheels, npm packages, our own source) into the context."""
    script = spec.recipe / "prepare.sh"
    if not script.is_file():
        return
    log = log_dir / f"prepare-{spec.service}.log"
    with log.open("w") as fh:
        proc = subprocess.run(
            ["bash", str(script)],
            cwd=spec.recipe,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ROOT": str(project_root())},
        )
    if proc.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise RuntimeError(f"preparing {spec.image} failed (log {log}):\n{tail}")


def _bases(spec: BuildSpec) -> dict[str, str]:
    """The ids of the recipe's base images (as they are now) and its build args."""
    bases = {b: _inspect(b, "{{.Id}}") or "absent" for b in base_images(spec)}
    bases.update({f"arg:{k}": v for k, v in spec.args})
    return bases


def build(spec: BuildSpec, log_dir: Path) -> tuple[BuildSpec, str, float]:
    """Build one image unless its label matches; return (spec, 'cached'|'built', seconds)."""
    start = time.monotonic()
    if not spec.external_context:
        prepare(spec, log_dir)
    digest = context_hash(spec.recipe, _bases(spec))
    if _inspect(spec.image, f'{{{{ index .Config.Labels "{LABEL}" }}}}') == digest:
        return spec, "cached", time.monotonic() - start
    if spec.external_context:  # fills the context; a first run may add package-lock.json
        prepare(spec, log_dir)  # and may make the base image (n8n's rootfs): ids read again
        digest = context_hash(spec.recipe, _bases(spec))
    log = log_dir / f"build-{spec.service}.log"
    with log.open("w") as fh:
        proc = subprocess.run(
            [
                "docker",
                "build",
                "--label",
                f"{LABEL}={digest}",
                "--tag",
                spec.image,
                "--file",
                str(spec.dockerfile_path),
                *(a for k, v in spec.args for a in ("--build-arg", f"{k}={v}")),
                str(spec.context),
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    if proc.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise RuntimeError(f"building {spec.image} for {spec.service} failed (log {log}):\n{tail}")
    return spec, "built", time.monotonic() - start


def build_all(specs: list[BuildSpec], jobs: int, log_dir: Path) -> int:
    log_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(build, s, log_dir) for s in specs]
        for fut in futures:
            try:
                spec, what, took = fut.result()
                print(f"  image {spec.image} ({spec.service}): {what} in {took:.1f} s", flush=True)
            except RuntimeError as exc:
                failures += 1
                print(f"  {exc}", file=sys.stderr, flush=True)
    return failures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stackcheck.ops.images")
    parser.add_argument(
        "files", nargs="*", type=Path, default=[project_root() / "stack" / "compose.offline.yml"]
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--log-dir", type=Path, default=project_root() / ".stackcheck" / "logs")
    args = parser.parse_args(argv)
    specs = specs_from_files(args.files)
    failures = build_all(specs, args.jobs, args.log_dir)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
