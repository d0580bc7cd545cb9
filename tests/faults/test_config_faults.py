"""Config faults found by probing (issue 10, fault 14): each is refused at start-up as a
ConfigError naming the key, shown by the real ``harbord`` command as one message and exit 2
(``doctor``: a failed check, exit 1), never a traceback."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import Mosquitto
from tests.support.media import make_mp3

HARBORD = Path(sys.executable).with_name("harbord")  # the venv's console script
CHAIN = '[pipeline]\nhandlers = ["parse", "probe", "checksum", "store"]\n'  # no model to load
NO_MQTT = "[mqtt]\nenabled = false\n"


def harbord(config: Path | None, *args: str, cwd: Path | None = None,
            env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``harbord [--config CONFIG] ARGS`` as a user would; returns the finished process."""
    base = {k: v for k, v in os.environ.items() if k not in ("HARBORD_CONFIG", "STATE_DIRECTORY")}
    base.pop("NOTIFY_SOCKET", None)
    base.update({"HF_HUB_OFFLINE": "1", "COLUMNS": "300"}, **(env or {}))
    argv = [str(HARBORD), *(["--config", str(config)] if config else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=base)


def write_config(tmp_path: Path, body: str, *, name: str = "harbord.toml") -> Path:
    config = tmp_path / name
    config.write_text(body + CHAIN + NO_MQTT, encoding="utf-8")
    return config


def paths(state: Path | str, library: Path | str) -> str:
    return f'[paths]\nstate = "{state}"\nlibrary = "{library}"\n'


def watch(path: Path | str, **keys: str | bool) -> str:
    extra = "".join(f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}\n"
                    for k, v in keys.items())
    return f'[[watch]]\npath = "{path}"\n{extra}'


def assert_refused(run: subprocess.CompletedProcess[str], key: str, *words: str) -> None:
    """Exit 2, the key first in the message, no traceback."""
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith(f"harbord: {key}: "), run.stderr
    flat = " ".join(run.stderr.split())  # rich wraps long lines at 80 columns
    for word in words:
        assert word in flat, (word, run.stderr)


# --- 1. empty paths ---------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["watch.0.path", "paths.state", "paths.library"])
def test_an_empty_folder_key_is_refused(tmp_path: Path, key: str) -> None:
    state, library, inbox = [str(tmp_path / n) for n in ("state", "library", "inbox")]
    state, library, inbox = ("" if key == "paths.state" else state,
                             "" if key == "paths.library" else library,
                             "" if key == "watch.0.path" else inbox)
    config = write_config(tmp_path, paths(state, library) + watch(inbox))
    assert_refused(harbord(config, "check-config"), key, "must not be empty")


def test_an_empty_watch_path_does_not_move_the_working_directory_away(tmp_path: Path) -> None:
    # Before: "" became Path("."): `harbord run` watched its working directory and moved
    # what it found there into the library.
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    song = make_mp3(cwd / "Artist - Song.mp3", seed=90)
    config = write_config(tmp_path, paths(tmp_path / "state", tmp_path / "library")
                          + watch("", action="move"))
    try:
        run = harbord(config, "run", cwd=cwd, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("harbord run started on an empty watch path")
    assert_refused(run, "watch.0.path", "must not be empty")
    assert song.exists()


# --- 2. a watch in the library (or the state folder) ------------------------------------------

@pytest.mark.parametrize("where", ["equal", "inside", "dotdot", "symlink"])
def test_a_watch_in_the_library_is_refused(tmp_path: Path, where: str) -> None:
    library = tmp_path / "library"
    (library / "incoming").mkdir(parents=True)
    (tmp_path / "link").symlink_to(library / "incoming")
    folder = {"equal": library, "inside": library / "incoming",
              "dotdot": tmp_path / "other" / ".." / "library" / "incoming",
              "symlink": tmp_path / "link"}[where]
    config = write_config(tmp_path, paths(tmp_path / "state", library)
                          + watch(tmp_path / "inbox") + watch(folder, kind="photos"))
    for command in ("check-config", "run"):
        assert_refused(harbord(config, command, timeout=30), "watch.1.path", "paths.library",
                       "never ingested")


def test_a_watch_in_the_state_folder_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, paths(tmp_path / "state", tmp_path / "library")
                          + watch(tmp_path / "state" / "drop"))
    assert_refused(harbord(config, "check-config"), "watch.0.path", "paths.state", "never ingested")


# --- 3. the same folder watched twice, nested watches -----------------------------------------

def test_the_same_folder_watched_twice_is_refused(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "alias").symlink_to(inbox)
    base = paths(tmp_path / "state", tmp_path / "library")
    twice = write_config(tmp_path, base + watch(inbox, action="move") + watch(inbox, action="copy"))
    assert_refused(harbord(twice, "check-config"), "watch.1.path", "already watched by watch.0.path")
    aliased = write_config(tmp_path, base + watch(inbox) + watch(tmp_path / "inbox" / ".")
                           + watch(tmp_path / "alias"), name="aliased.toml")
    assert_refused(harbord(aliased, "check-config"), "watch.1.path", "already watched by watch.0.path")


def test_a_watch_inside_a_recursive_watch_is_refused(tmp_path: Path) -> None:
    base = paths(tmp_path / "state", tmp_path / "library")
    outer, inner = tmp_path / "media", tmp_path / "media" / "photos"
    # the inner one is named, whichever comes first
    config = write_config(tmp_path, base + watch(outer) + watch(inner, kind="photos"))
    assert_refused(harbord(config, "check-config"), "watch.1.path", "inside watch.0.path", "recursive")
    config = write_config(tmp_path, base + watch(inner, kind="photos") + watch(outer))
    assert_refused(harbord(config, "check-config"), "watch.0.path", "inside watch.1.path", "recursive")
    # below a non-recursive watch (it sees only its top level) another watch is fine
    config = write_config(tmp_path, base + watch(outer, recursive=False) + watch(inner, kind="photos"))
    run = harbord(config, "check-config")
    assert run.returncode == 0, run.stderr


# --- 4. the library or the state folder in a watched folder -----------------------------------

@pytest.mark.parametrize(
    ("key", "state", "library", "recursive"),
    [
        ("paths.library", "state", "inbox/library", True),
        ("paths.state", "inbox/state", "library", True),
        ("paths.state", "inbox", "library", False),  # equal: its top level is harbord's own
        ("paths.library", "state", "alias/library", True),  # through a symlink to the inbox
        ("paths.state", "x/../inbox/state", "library", True),  # ".." cannot dodge it
    ],
)
def test_the_library_or_state_in_a_watched_folder_is_refused(
    tmp_path: Path, key: str, state: str, library: str, recursive: bool
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "alias").symlink_to(inbox)
    config = write_config(tmp_path, paths(tmp_path / state, tmp_path / library)
                          + watch(inbox, recursive=recursive))
    for command in ("check-config", "run", "status"):
        assert_refused(harbord(config, command, timeout=30), key, "watch.0.path")


def test_the_library_below_a_non_recursive_watch_is_allowed_and_defaults_validate(
    tmp_path: Path,
) -> None:
    inbox = tmp_path / "inbox"
    config = write_config(tmp_path, paths(tmp_path / "state", inbox / "library")
                          + watch(inbox, recursive=False))
    assert harbord(config, "check-config").returncode == 0
    # no config at all: state, library and the default inbox side by side
    run = harbord(None, "check-config", env={"STATE_DIRECTORY": str(tmp_path / "sd")})
    assert run.returncode == 0, run.stderr
    # ... but a library that holds the default inbox (<state parent>/inbox) is refused
    config = write_config(tmp_path, paths(tmp_path / "root" / "state", tmp_path / "root"),
                          name="default.toml")
    assert_refused(harbord(config, "check-config"), "paths.library", "default inbox",
                   "never ingested")


# --- 5. a config file that is not UTF-8 -------------------------------------------------------

def test_a_config_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes(f'[[watch]]\npath = "{tmp_path}/Médias"\n'.encode("latin-1"))
    for command in ("check-config", "run", "status"):
        run = harbord(config, command, timeout=30)
        assert run.returncode == 2, run.stderr
        assert "Traceback" not in run.stderr, run.stderr
        assert "not UTF-8" in run.stderr and "line 2" in run.stderr, run.stderr


# --- 6. a state (or library) folder that cannot be used ---------------------------------------

@pytest.mark.parametrize("kind", ["proc", "file", "below_a_file", "read_only"])
@pytest.mark.parametrize("key", ["paths.state", "paths.library"])
def test_an_unusable_state_or_library_folder_is_a_config_error(
    tmp_path: Path, kind: str, key: str
) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    bad = {"proc": "/proc/harbord", "file": str(tmp_path / "a_file"),
           "below_a_file": str(tmp_path / "a_file" / "state"), "read_only": "/proc/self"}[kind]
    state = bad if key == "paths.state" else str(tmp_path / "state")
    library = bad if key == "paths.library" else str(tmp_path / "library")
    config = write_config(tmp_path, paths(state, library) + watch(tmp_path / "inbox"))
    song = make_mp3(tmp_path / "Artist - Song.mp3", seed=91)
    for command in (["run"], ["ingest", str(song)]):
        assert_refused(harbord(config, *command, timeout=60), key)
    assert song.exists()
    # the other commands that read the state folder: no traceback either
    for command in (["status"], ["status", "--json"], ["show", "1"], ["retry", "--failed"],
                    ["search", "anything"]):
        run = harbord(config, *command, timeout=120)
        assert "Traceback" not in run.stderr, (command, run.stderr)
        assert run.returncode in (0, 1, 2), (command, run.returncode, run.stderr)
    doctor = harbord(config, "doctor")
    assert doctor.returncode == 1 and "Traceback" not in doctor.stderr
    label = "state folder" if key == "paths.state" else "library folder"
    assert "fail" in next(line for line in doctor.stdout.splitlines() if label in line)


# --- 7. doctor: a broker that refuses harbord's login ------------------------------------------

def password_line(user: str, password: str) -> str:
    """A mosquitto password-file line: ``mosquitto_passwd`` if installed, else the same
    PBKDF2-SHA512 ``$7$`` hash mosquitto 2 writes (101 iterations, 12-byte salt)."""
    tool = shutil.which("mosquitto_passwd")
    if tool:
        with_tool = Path(os.environ.get("TMPDIR", "/tmp")) / f"harbord-pw-{os.getpid()}-{time.monotonic_ns()}"
        try:
            subprocess.run([tool, "-c", "-b", str(with_tool), user, password], check=True,
                           capture_output=True, timeout=30)
            return with_tool.read_text().strip()
        finally:
            with_tool.unlink(missing_ok=True)
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return f"{user}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


class AuthMosquitto(Mosquitto):
    """A private broker that allows no anonymous client and knows one user."""

    def __init__(self, workdir: Path, user: str, password: str) -> None:
        super().__init__(workdir)
        self.passwords = workdir / "passwords"
        self.passwords.write_text(password_line(user, password) + "\n")
        self.passwords.chmod(0o600)

    def config_text(self) -> str:
        """No anonymous access; the one user of the password file. As root, mosquitto drops
        to its own user, which cannot read pytest's temp folder: it stays root here."""
        user = "user root\n" if os.geteuid() == 0 else ""
        return (f"{user}listener {self.port} 127.0.0.1\nallow_anonymous false\n"
                f"password_file {self.passwords}\npersistence false\nlog_dest stdout\n")


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[AuthMosquitto]:
    (tmp_path / "mosquitto").mkdir()
    broker = AuthMosquitto(tmp_path / "mosquitto", "harbord", "s3cret")
    broker.start()
    yield broker
    broker.stop()


def mqtt_row(stdout: str) -> str:
    row = next((line for line in stdout.splitlines() if "mqtt broker" in line), "")
    assert row, stdout
    return row


@pytest.mark.parametrize(
    ("credentials", "what"),
    [
        ('username = "harbord"\npassword = "wrong"\n', "wrong password"),
        ('username = "nobody"\npassword = "s3cret"\n', "unknown user"),
        ("", "anonymous"),
    ],
)
def test_doctor_fails_when_the_broker_refuses_the_login(
    tmp_path: Path, auth_broker: AuthMosquitto, credentials: str, what: str
) -> None:
    mqtt = f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {auth_broker.port}\n'
    base = paths(tmp_path / "state", tmp_path / "library") + watch(tmp_path / "inbox") + CHAIN
    bad = tmp_path / "bad.toml"
    bad.write_text(base + mqtt + credentials)
    run = harbord(bad, "doctor")
    assert run.returncode == 1, (what, run.stdout)
    assert "Traceback" not in run.stderr, run.stderr
    row = mqtt_row(run.stdout)
    assert "fail" in row and "refused the login" in row, (what, run.stdout)
    assert "s3cret" not in run.stdout and "wrong" not in run.stdout  # no password shown

    good = tmp_path / "good.toml"  # the right credentials: the check passes
    good.write_text(base + mqtt + 'username = "harbord"\npassword = "s3cret"\n')
    run = harbord(good, "doctor")
    assert run.returncode == 0, run.stdout
    assert "ok" in mqtt_row(run.stdout) and "login accepted" in run.stdout
