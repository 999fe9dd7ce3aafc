"""stackcheck.compose: parsing `docker compose port` output, and the argv it runs."""

from pathlib import Path

import pytest

from stackcheck.compose import Compose, PublishedPort, parse_port_output

pytestmark = pytest.mark.unit


# --- parse_port_output --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("127.0.0.1:49153\n", PublishedPort("127.0.0.1", 49153)),
        ("0.0.0.0:5432", PublishedPort("0.0.0.0", 5432)),
        ("[::1]:6379\n", PublishedPort("::1", 6379)),
        ("[::]:80", PublishedPort("::", 80)),
        ("  127.0.0.1:8080  \n", PublishedPort("127.0.0.1", 8080)),
    ],
)
def test_parse_port_single(output, expected):
    assert parse_port_output(output) == [expected]


def test_parse_port_several_lines_and_blanks():
    out = "\n0.0.0.0:5432\n\n[::]:5432\n   \n127.0.0.1:15432\n"
    assert parse_port_output(out) == [
        PublishedPort("0.0.0.0", 5432),
        PublishedPort("::", 5432),
        PublishedPort("127.0.0.1", 15432),
    ]


def test_parse_port_port_is_int():
    (p,) = parse_port_output("127.0.0.1:49153")
    assert p.port == 49153
    assert isinstance(p.port, int)


@pytest.mark.parametrize("output", ["", "\n", "  \n\n"])
def test_parse_port_empty(output):
    assert parse_port_output(output) == []


@pytest.mark.parametrize(
    "garbage",
    [
        "no service with port 5432",
        "127.0.0.1",
        "127.0.0.1:http",
        "[::1:6379",
        "127.0.0.1:5432 extra",
        "0.0.0.0:5432\nError: boom",
    ],
)
def test_parse_port_garbage_raises(garbage):
    with pytest.raises(ValueError, match="unexpected `compose port` output"):
        parse_port_output(garbage)


# --- Compose.argv -------------------------------------------------------------------------
def test_argv_project_directory_and_files_in_order():
    c = Compose("proj", Path("/srv/stack"), files=("compose.yml", "compose.offline.yml"))
    assert c.argv("ps", "--all") == [
        "docker",
        "compose",
        "--project-name",
        "proj",
        "--project-directory",
        "/srv/stack",
        "--file",
        "/srv/stack/compose.yml",
        "--file",
        "/srv/stack/compose.offline.yml",
        "ps",
        "--all",
    ]


def test_argv_one_file_per_entry():
    files = ("a.yml", "b.yml", "c.yml")
    argv = Compose("p", Path("/d"), files=files).argv()
    assert argv.count("--file") == 3
    given = [argv[i + 1] for i, a in enumerate(argv) if a == "--file"]
    assert given == ["/d/a.yml", "/d/b.yml", "/d/c.yml"]


def test_argv_default_file_and_custom_binary():
    c = Compose("p", Path("/d"), binary=("docker-compose",))
    argv = c.argv("up")
    assert argv[0] == "docker-compose"
    assert argv[argv.index("--project-name") + 1] == "p"
    assert argv[argv.index("--project-directory") + 1] == "/d"
    assert argv[argv.index("--file") + 1] == "/d/compose.yml"
    assert argv[-1] == "up"
