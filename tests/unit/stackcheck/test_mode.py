"""stackcheck.mode: --stack / $STACKCHECK_STACK, and stack/.env into one StackConfig."""

import pytest

from stackcheck.mode import Mode, ModeError, read_env_file, resolve, select_mode

pytestmark = pytest.mark.unit


# --- select_mode --------------------------------------------------------------------------
def test_default_is_reuse():
    assert select_mode(None, {}) is Mode.REUSE


def test_env_used_without_option():
    assert select_mode(None, {"STACKCHECK_STACK": "fresh"}) is Mode.FRESH


def test_option_wins_over_env():
    assert select_mode("external", {"STACKCHECK_STACK": "fresh"}) is Mode.EXTERNAL


@pytest.mark.parametrize("raw", ["FRESH", "Fresh", " fresh "])
def test_case_insensitive(raw):
    assert select_mode(raw, {}) is Mode.FRESH
    assert select_mode(None, {"STACKCHECK_STACK": raw}) is Mode.FRESH


def test_invalid_option_names_source_and_valid_modes():
    with pytest.raises(ModeError) as info:
        select_mode("sometimes", {"STACKCHECK_STACK": "fresh"})
    msg = str(info.value)
    assert "--stack='sometimes'" in msg
    assert "reuse, fresh, external" in msg


def test_invalid_env_names_env_variable():
    with pytest.raises(ModeError) as info:
        select_mode(None, {"STACKCHECK_STACK": "bogus"})
    msg = str(info.value)
    assert "STACKCHECK_STACK='bogus'" in msg
    assert "--stack" not in msg
    assert "reuse, fresh, external" in msg


def test_mode_error_is_value_error():
    assert issubclass(ModeError, ValueError)


# --- read_env_file ------------------------------------------------------------------------
def test_read_env_file(tmp_path):
    f = tmp_path / ".env"
    f.write_text(
        "# Written by ./run setup\n"
        "\n"
        "COMPOSE_PROJECT_NAME=stackcheck-abc\n"
        "  # indented comment\n"
        'QUOTED="double quoted"\n'
        "SINGLE='single'\n"
        " SPACED = value with spaces \n"
        "EMPTY=\n"
        "URL=postgres://u:p@h/db?x=1\n"
        "not a pair\n",
        encoding="utf-8",
    )
    assert read_env_file(f) == {
        "COMPOSE_PROJECT_NAME": "stackcheck-abc",
        "QUOTED": "double quoted",
        "SINGLE": "single",
        "SPACED": "value with spaces",
        "EMPTY": "",
        "URL": "postgres://u:p@h/db?x=1",
    }


def test_read_env_file_missing(tmp_path):
    assert read_env_file(tmp_path / ".env") == {}


# --- resolve ------------------------------------------------------------------------------
def write_env(stack_dir, text):
    (stack_dir / ".env").write_text(text, encoding="utf-8")


def test_resolve_defaults_without_env_file(tmp_path):
    cfg = resolve(option_mode=None, option_teardown=False, env={}, stack_dir=tmp_path)
    assert cfg.mode is Mode.REUSE
    assert cfg.project == "stackcheck"
    assert cfg.stack_dir == tmp_path
    assert cfg.files == ("compose.yml",)
    assert cfg.offline is False
    assert cfg.teardown is False


def test_resolve_reads_project_and_offline_from_env_file(tmp_path):
    write_env(tmp_path, "COMPOSE_PROJECT_NAME=stackcheck-1234\nSTACKCHECK_OFFLINE=1\n")
    cfg = resolve(option_mode=None, option_teardown=False, env={}, stack_dir=tmp_path)
    assert cfg.project == "stackcheck-1234"
    assert cfg.offline is True
    assert cfg.files == ("compose.yml", "compose.offline.yml")


def test_resolve_env_file_online(tmp_path):
    write_env(tmp_path, "STACKCHECK_OFFLINE=0\n")
    cfg = resolve(option_mode=None, option_teardown=False, env={}, stack_dir=tmp_path)
    assert cfg.offline is False
    assert cfg.files == ("compose.yml",)


@pytest.mark.parametrize(("env_value", "offline"), [("0", False), ("false", False), ("", True)])
def test_resolve_env_offline_overrides_env_file(tmp_path, env_value, offline):
    write_env(tmp_path, "STACKCHECK_OFFLINE=1\n")
    cfg = resolve(
        option_mode=None,
        option_teardown=False,
        env={"STACKCHECK_OFFLINE": env_value},  # "" means unset: .env decides
        stack_dir=tmp_path,
    )
    assert cfg.offline is offline


def test_resolve_env_offline_switches_on(tmp_path):
    write_env(tmp_path, "STACKCHECK_OFFLINE=0\n")
    cfg = resolve(
        option_mode=None,
        option_teardown=False,
        env={"STACKCHECK_OFFLINE": "yes"},
        stack_dir=tmp_path,
    )
    assert cfg.offline is True
    assert cfg.files == ("compose.yml", "compose.offline.yml")


def test_resolve_invalid_offline_value(tmp_path):
    with pytest.raises(ModeError, match="yes/no"):
        resolve(
            option_mode=None,
            option_teardown=False,
            env={"STACKCHECK_OFFLINE": "perhaps"},
            stack_dir=tmp_path,
        )


def test_resolve_project_env_wins_over_env_file(tmp_path):
    write_env(tmp_path, "COMPOSE_PROJECT_NAME=from-dotenv\n")
    cfg = resolve(
        option_mode=None,
        option_teardown=False,
        env={"STACKCHECK_PROJECT": "from-env"},
        stack_dir=tmp_path,
    )
    assert cfg.project == "from-env"


def test_resolve_mode_and_teardown(tmp_path):
    cfg = resolve(option_mode="fresh", option_teardown=True, env={}, stack_dir=tmp_path)
    assert cfg.mode is Mode.FRESH
    assert cfg.teardown is True
    cfg = resolve(
        option_mode=None,
        option_teardown=False,
        env={"STACKCHECK_TEARDOWN": "1", "STACKCHECK_STACK": "fresh"},
        stack_dir=tmp_path,
    )
    assert cfg.mode is Mode.FRESH
    assert cfg.teardown is True


def test_resolve_external_with_teardown_option_raises(tmp_path):
    with pytest.raises(ModeError, match="external"):
        resolve(option_mode="external", option_teardown=True, env={}, stack_dir=tmp_path)


def test_resolve_external_with_teardown_env_raises(tmp_path):
    with pytest.raises(ModeError, match="cannot tear it down"):
        resolve(
            option_mode=None,
            option_teardown=False,
            env={"STACKCHECK_STACK": "external", "STACKCHECK_TEARDOWN": "true"},
            stack_dir=tmp_path,
        )


def test_resolve_external_without_teardown(tmp_path):
    cfg = resolve(option_mode="external", option_teardown=False, env={}, stack_dir=tmp_path)
    assert cfg.mode is Mode.EXTERNAL
    assert cfg.teardown is False
