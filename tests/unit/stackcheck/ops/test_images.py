"""stackcheck.ops.images: build specs from compose files, the context hash, FROM lines."""

from pathlib import Path

import pytest

from stackcheck.ops.images import (
    BuildSpec,
    base_images,
    context_hash,
    specs_from_compose,
    specs_from_files,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def context(tmp_path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "conf").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM debian:bookworm-slim\nCOPY conf /etc/app\n")
    (ctx / "conf" / "app.conf").write_text("port = 5432\n")
    return ctx


# --- context_hash -------------------------------------------------------------------------
def test_hash_is_stable(context):
    first = context_hash(context, {"debian:bookworm-slim": "sha256:aaa"})
    assert first == context_hash(context, {"debian:bookworm-slim": "sha256:aaa"})
    assert len(first) == 24
    int(first, 16)  # hex


def test_hash_does_not_depend_on_location(context, tmp_path):
    copy = tmp_path / "elsewhere"
    copy.mkdir()
    for f in context.rglob("*"):
        target = copy / f.relative_to(context)
        if f.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.write_bytes(f.read_bytes())
            target.chmod(f.stat().st_mode)
    assert context_hash(copy) == context_hash(context)


def test_hash_changes_with_file_bytes(context):
    before = context_hash(context)
    (context / "conf" / "app.conf").write_text("port = 5433\n")
    assert context_hash(context) != before


def test_hash_changes_when_file_added(context):
    before = context_hash(context)
    (context / "conf" / "extra.conf").write_text("")
    assert context_hash(context) != before


def test_hash_changes_when_file_renamed(context):
    before = context_hash(context)
    (context / "conf" / "app.conf").rename(context / "conf" / "other.conf")
    assert context_hash(context) != before


def test_hash_changes_with_file_mode(context):
    before = context_hash(context)
    (context / "conf" / "app.conf").chmod(0o755)
    assert context_hash(context) != before


def test_hash_changes_with_base_image_id(context):
    a = context_hash(context, {"debian:bookworm-slim": "sha256:aaa"})
    b = context_hash(context, {"debian:bookworm-slim": "sha256:bbb"})
    assert a != b
    assert a != context_hash(context)  # no base ids at all
    assert context_hash(context, {"debian:bookworm-slim": "absent"}) != a


def test_hash_base_ids_order_does_not_matter(context):
    ids = {"a:1": "sha256:1", "b:2": "sha256:2"}
    assert context_hash(context, ids) == context_hash(context, dict(reversed(ids.items())))


def test_hash_tells_file_boundaries_apart(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir()
    one.mkdir()
    (two / "x").write_text("A")
    (two / "y").write_text("B")
    mode_y = oct((two / "y").stat().st_mode & 0o777)
    (one / "x").write_text(f"Ay{mode_y}B")
    (one / "x").chmod((two / "x").stat().st_mode & 0o777)
    assert context_hash(two) != context_hash(one)


# --- specs_from_compose -------------------------------------------------------------------
COMPOSE = """\
services:
  postgres:
    image: stackcheck/postgres:15-offline
    build: ./images/postgres
  redis:
    image: stackcheck/redis:7-offline
    build:
      context: images/redis
      dockerfile: Dockerfile.offline
  mailpit:
    image: axllent/mailpit:v1.20
  nobuildimage:
    build: ./images/orphan
  empty:
"""


def test_specs_from_compose(tmp_path):
    stack = tmp_path / "stack"
    stack.mkdir()
    (stack / "compose.offline.yml").write_text(COMPOSE)
    specs = specs_from_compose(stack / "compose.offline.yml")
    assert specs == [
        BuildSpec(
            "postgres",
            "stackcheck/postgres:15-offline",
            (stack / "images" / "postgres").resolve(),
            "Dockerfile",
        ),
        BuildSpec(
            "redis",
            "stackcheck/redis:7-offline",
            (stack / "images" / "redis").resolve(),
            "Dockerfile.offline",
        ),
    ]


def test_specs_from_compose_without_services(tmp_path):
    f = tmp_path / "compose.yml"
    f.write_text("")
    assert specs_from_compose(f) == []
    f.write_text("name: x\n")
    assert specs_from_compose(f) == []


# --- base_images --------------------------------------------------------------------------
def test_base_images(tmp_path):
    (tmp_path / "Dockerfile").write_text(
        "# syntax=docker/dockerfile:1\n"
        "# FROM commented:out\n"
        "ARG V=1\n"
        "FROM --platform=linux/amd64 golang:1.22 AS build\n"
        "RUN go build ./...\n"
        "  from debian:bookworm-slim\n"
        "FROM --platform=$BUILDPLATFORM --link alpine:3.20 as tools\n"
        "COPY --from=build /out /out\n"
    )
    spec = BuildSpec("svc", "img", tmp_path)
    assert base_images(spec) == ["golang:1.22", "debian:bookworm-slim", "alpine:3.20"]


def test_base_images_custom_dockerfile(tmp_path):
    (tmp_path / "Dockerfile.offline").write_text("FROM stackcheck/base:bookworm\n")
    assert base_images(BuildSpec("s", "i", tmp_path, "Dockerfile.offline")) == [
        "stackcheck/base:bookworm"
    ]


def test_recipe_is_context_when_dockerfile_inside(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    s = BuildSpec("s", "i", tmp_path)
    assert s.recipe == tmp_path.resolve() and not s.external_context


def test_recipe_is_dockerfile_folder_for_external_context(tmp_path):
    """n8n's 1.5 GB context lives outside the repo; its recipe (what is hashed) is the folder of
    its Dockerfile, so a run with the image present never reads the big context."""
    stack = tmp_path / "stack"
    img = stack / "images" / "n8n"
    img.mkdir(parents=True)
    (img / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    (stack / "compose.offline.yml").write_text(
        "services:\n  n8n:\n    image: x\n    build:\n      context: ../.stackcheck/n8n/context\n"
        "      dockerfile: ../../../stack/images/n8n/Dockerfile\n"
    )
    [s] = specs_from_compose(stack / "compose.offline.yml")
    assert s.context == (tmp_path / ".stackcheck/n8n/context").resolve()  # need not exist
    assert s.recipe == img.resolve() and s.external_context
    assert base_images(s) == ["debian:bookworm-slim"]


def test_later_file_overrides_build_args_and_image(tmp_path):
    """The offline override changes only the backup image's build args: the merged spec keeps
    the canonical context and carries the override's args."""
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "Dockerfile").write_text("FROM debian:bookworm-slim\n")
    (tmp_path / "compose.yml").write_text(
        "services:\n  backup:\n    image: stackcheck/backup:1\n    build:\n      context: ./b\n"
        "      args: {PG_MAJOR: '18', MIRROR: http://x}\n"
        "  plain:\n    image: redis:8\n"
    )
    (tmp_path / "compose.offline.yml").write_text(
        "services:\n  backup:\n    build:\n      args: [PG_MAJOR=15, MIRROR=]\n"
        "  plain:\n    image: stackcheck/redis:7\n    build: ./b\n"
    )
    specs = specs_from_files([tmp_path / "compose.yml", tmp_path / "compose.offline.yml"])
    by_service = {s.service: s for s in specs}
    assert by_service["backup"].context == (tmp_path / "b").resolve()
    assert dict(by_service["backup"].args) == {"PG_MAJOR": "15", "MIRROR": ""}
    assert by_service["plain"].image == "stackcheck/redis:7"
    canonical = {s.service: s for s in specs_from_files([tmp_path / "compose.yml"])}
    assert dict(canonical["backup"].args) == {"PG_MAJOR": "18", "MIRROR": "http://x"}
    assert "plain" not in canonical
