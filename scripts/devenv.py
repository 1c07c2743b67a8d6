"""Developer environment for Switchyard: system packages, the virtualenv, local Postgres/Redis and the demo."""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import glob
import hashlib
import http.client
import importlib.util
import ipaddress
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, quote, unquote, urlsplit

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
VENV_BIN = VENV / "bin"
VENV_PYTHON = VENV_BIN / "python"
REQUIREMENTS = REPO / "requirements.txt"
REQUIREMENTS_STAMP = VENV / ".requirements.sha256"

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/switchyard"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
APT_PACKAGES = ("chromium", "slapd", "ldap-utils", "libldap2-dev", "libsasl2-dev", "hey", "wrk")
# initdb refuses to run as root; this account owns the private cluster when there is no `postgres` user.
FALLBACK_PG_ACCOUNT = "switchyard-pg"
SIMULATORS = (("us-east", 9100), ("eu-west", 9101))
HEALTH_TIMEOUT = 60.0
CHILD_GRACE = 10.0
SERVER_GRACE = 30.0
# sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


class SetupError(Exception):
    """Something the developer has to fix: reported as one message, exit status 1."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived while the demo was running."""


def say(message: str) -> None:
    # stdout is kept for `--print-env`, which callers eval.
    print(f"devenv: {message}", file=sys.stderr, flush=True)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} cannot be read)"


@dataclass(frozen=True)
class Layout:
    """Where private state lives: SWITCHYARD_VAR_DIR, by default <repo>/var."""

    root: Path

    @classmethod
    def from_env(cls) -> Layout:
        return cls((REPO / (os.environ.get("SWITCHYARD_VAR_DIR") or "var")).resolve())

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def pg_data(self) -> Path:
        return self.root / "postgres" / "data"

    @property
    def pg_sockets(self) -> Path:
        return self.run / "postgres"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    def marker(self, key: str) -> Path:
        """The record that this var dir started a server: its pid and the address it serves."""
        return self.run / f"{key}.pid"

    def log_file(self, name: str) -> Path:
        return self.log / f"{name}.log"


def make_dirs(path: Path, mode: int = 0o755) -> Path:
    """Create path with mode, and missing parents with 0755 whatever the umask: the postgres account must pass."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        directory.chmod(mode if directory == path else 0o755)
    return path


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    # Parallel test workers or a second terminal would otherwise race to initdb the same directory.
    make_dirs(path.parent)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def check_call(argv: list[str], what: str, **kwargs) -> None:
    """Run a command whose output goes to the terminal; a failure becomes a SetupError."""
    code = subprocess.run([str(arg) for arg in argv], **kwargs).returncode
    if code != 0:
        raise SetupError(f"{what} failed with exit status {code}")


def check_output(argv: list[str], what: str, **kwargs) -> str:
    """Run a command quietly; its output is shown only when it fails."""
    result = subprocess.run(
        [str(arg) for arg in argv], stdin=subprocess.DEVNULL, capture_output=True, text=True, **kwargs
    )
    if result.returncode != 0:
        raise SetupError(
            f"{what} failed with exit status {result.returncode}:\n{result.stdout}{result.stderr}".rstrip()
        )
    return result.stdout


# --- bootstrap -----------------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """The bin directory of the newest PostgreSQL server installed from Debian's packages."""

    def version(bin_dir: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in bin_dir.parent.name.split(".") if part.isdigit())

    found = [Path(initdb).parent for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    return max(found, key=version) if found else None


def redis_binary() -> str | None:
    return shutil.which("redis-server") or next(
        (path for path in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(path, os.X_OK)), None
    )


def wanted_system_packages() -> list[str]:
    wanted = list(APT_PACKAGES)
    if postgres_bin_dir() is None:
        wanted.append("postgresql")
    if redis_binary() is None:
        wanted.append("redis-server")
    # Debian's own python3 ships without ensurepip, which `python3 -m venv` needs.
    if importlib.util.find_spec("ensurepip") is None:
        wanted.append("python3-venv")
    return wanted


def missing_system_packages() -> list[str]:
    wanted = wanted_system_packages()
    # dpkg-query exits 1 when it has never heard of a package, and prints the others regardless.
    result = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${Status}\n", *wanted], capture_output=True, text=True)
    installed = {
        name
        for name, _, status in (line.partition("\t") for line in result.stdout.splitlines())
        if status == "install ok installed"
    }
    return [package for package in wanted if package not in installed]


def install_system_packages() -> None:
    if not shutil.which("dpkg-query"):
        say("not a Debian system: install by hand " + " ".join(wanted_system_packages()))
        return
    missing = missing_system_packages()
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        say("missing system packages (install them as root): " + " ".join(missing))
        return
    say("installing system packages: " + " ".join(missing))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    check_call(["apt-get", "update", "-qq"], "apt-get update", env=env)
    # Keep existing configuration files instead of asking which one wins.
    conffile_options = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]
    check_call(["apt-get", "install", "-y", "-qq", *conffile_options, *missing], "apt-get install", env=env)


def ensure_venv() -> None:
    if not VENV_PYTHON.exists():
        say(f"creating the virtualenv {VENV}")
        check_call([sys.executable, "-m", "venv", VENV], "python3 -m venv")
        check_call([VENV_PYTHON, "-m", "pip", "install", "-q", "--upgrade", "pip"], "upgrading pip")
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    with contextlib.suppress(OSError):
        if REQUIREMENTS_STAMP.read_text().strip() == digest:
            return
    say("installing Python dependencies from requirements.txt")
    check_call(
        [VENV_PYTHON, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", REQUIREMENTS],
        "pip install -r requirements.txt",
        cwd=REPO,
    )
    REQUIREMENTS_STAMP.write_text(digest + "\n")


def bootstrap() -> None:
    install_system_packages()
    ensure_venv()


# --- service addresses ---------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One service as its URL describes it."""

    env_name: str
    label: str
    key: str
    comm: str
    url: str
    host: str
    port: int
    user: str = ""
    password: str = ""
    database: str = ""
    tls: bool = False

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def split_url(env_name: str, url: str, schemes: tuple[str, ...]) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise SetupError(f"{env_name} must start with {' or '.join(s + '://' for s in schemes)}, got {url!r}")
    try:
        parts.port  # noqa: B018 - a malformed port only shows when it is read
    except ValueError:
        raise SetupError(f"{env_name} has an invalid port: {url!r}") from None
    return parts


def parse_database_url(url: str) -> Target:
    parts = split_url("DATABASE_URL", url, ("postgres", "postgresql"))
    return Target(
        env_name="DATABASE_URL",
        label="PostgreSQL",
        key="postgres",
        comm="postgres",
        url=url,
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        database=unquote(parts.path.lstrip("/")) or "switchyard",
    )


def parse_redis_url(url: str) -> Target:
    parts = split_url("REDIS_URL", url, ("redis", "rediss"))
    return Target(
        env_name="REDIS_URL",
        label="Redis",
        key="redis",
        comm="redis-server",
        url=url,
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        tls=parts.scheme == "rediss",
    )


def connect(target: Target) -> socket.socket:
    return socket.create_connection((target.host, target.port), timeout=2)


def why_unreachable(target: Target, exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"the name {target.host!r} does not resolve"
    if isinstance(exc, TimeoutError):
        return "the connection timed out"
    return (exc.strerror or str(exc)).lower()


def pg_isready_binary() -> str | None:
    bin_dir = postgres_bin_dir()
    return shutil.which("pg_isready") or (str(bin_dir / "pg_isready") if bin_dir else None)


def postgres_problem(target: Target) -> str | None:
    """Why PostgreSQL at target does not answer, or None when it does."""
    try:
        connect(target).close()
    except OSError as exc:
        return why_unreachable(target, exc)
    isready = pg_isready_binary()
    if isready is None:
        return None
    argv = [isready, "-q", "-h", target.host, "-p", str(target.port), "-t", "3"]
    for _ in range(30):
        code = subprocess.run(argv).returncode
        # 1 means the server is starting up or shutting down; wait for it to make up its mind.
        if code == 1:
            time.sleep(1)
            continue
        if code == 2:
            raise SetupError(
                f"something listens at {target.address} ({target.env_name}) but does not answer as PostgreSQL"
            )
        return None
    raise SetupError(f"PostgreSQL at {target.address} ({target.env_name}) keeps rejecting connections")


def redis_problem(target: Target) -> str | None:
    """Why Redis at target does not answer, or None when it does."""
    try:
        conn = connect(target)
    except OSError as exc:
        return why_unreachable(target, exc)
    with conn:
        if target.tls:
            return None
        try:
            conn.sendall(b"PING\r\n")
            reply = conn.recv(64)
        except OSError:
            reply = b""
    # "+PONG", or an error such as "-NOAUTH" from a Redis that wants a password: either way it is Redis.
    if reply[:1] in (b"+", b"-"):
        return None
    raise SetupError(f"something listens at {target.address} ({target.env_name}) but does not answer as Redis")


# --- private servers -----------------------------------------------------------------------


def process_running(pid: int, comm: str) -> bool:
    """Whether pid is a live process named comm (a recycled pid or a zombie is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    state = stat[stat.rindex(")") + 2]
    return name == comm and state not in "ZX"


@dataclass(frozen=True)
class Marker:
    """A private server that this var dir started and that still runs."""

    pid: int
    address: str


def read_marker(path: Path, comm: str) -> Marker | None:
    try:
        pid_text, address = path.read_text().split()[:2]
        marker = Marker(int(pid_text), address)
    except OSError:
        return None
    except ValueError:
        marker = None
    if marker and process_running(marker.pid, comm):
        return marker
    path.unlink(missing_ok=True)
    return None


def write_marker(path: Path, pid: int, address: str) -> None:
    make_dirs(path.parent)
    path.write_text(f"{pid}\n{address}\n")


def account_ids(account: str | None) -> tuple[int, int]:
    if account is None:
        return os.getuid(), os.getgid()
    entry = pwd.getpwnam(account)
    return entry.pw_uid, entry.pw_gid


def as_account(account: str | None, argv: list) -> list:
    return ["runuser", "-u", account, "--", *argv] if account else argv


def pg_account(data: Path) -> str | None:
    """The account that runs the private cluster; None means this process, which initdb accepts unless root."""
    if os.geteuid() != 0:
        return None
    if data.exists() and data.stat().st_uid != 0:
        return pwd.getpwuid(data.stat().st_uid).pw_name
    for account in ("postgres", FALLBACK_PG_ACCOUNT):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(account)
            return account
    say(f"PostgreSQL: creating the system account {FALLBACK_PG_ACCOUNT} to own the private cluster")
    check_output(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            FALLBACK_PG_ACCOUNT,
        ],
        "useradd",
    )
    return FALLBACK_PG_ACCOUNT


def owned_dir(path: Path, account: str | None, mode: int = 0o755) -> Path:
    make_dirs(path, mode)
    os.chown(path, *account_ids(account))
    return path


def owned_file(path: Path, account: str | None) -> Path:
    make_dirs(path.parent)
    path.touch()
    os.chown(path, *account_ids(account))
    return path


def require_writable(path: Path, account: str | None) -> None:
    if account and subprocess.run(["runuser", "-u", account, "--", "test", "-w", str(path)]).returncode != 0:
        raise SetupError(
            f"the {account} account cannot write {path}: every directory above it must be searchable by others "
            f"(chmod o+x), or point SWITCHYARD_VAR_DIR somewhere that is"
        )


def init_postgres(target: Target, layout: Layout, bin_dir: Path, account: str | None) -> None:
    data = owned_dir(layout.pg_data, account, mode=0o700)
    require_writable(data, account)
    say(f"PostgreSQL: creating a private cluster in {data}")
    # Throwaway development data: skipping fsync saves seconds on every fresh machine.
    initdb = [
        bin_dir / "initdb",
        "-D",
        data,
        "-U",
        target.user,
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    ]
    check_output(as_account(account, initdb), "initdb", cwd=layout.root)


def socket_dir_setting(sockets: Path, port: int) -> str:
    # PostgreSQL refuses to start on a socket path that is too long; a deep var dir then gets TCP only.
    if len(os.fsencode(sockets / f".s.PGSQL.{port}")) > MAX_SOCKET_PATH:
        return ""
    return str(sockets)


def start_postgres(target: Target, layout: Layout) -> None:
    bin_dir = postgres_bin_dir()
    data = layout.pg_data
    account = pg_account(data)
    if not (data / "PG_VERSION").exists():
        init_postgres(target, layout, bin_dir, account)
    sockets = owned_dir(layout.pg_sockets, account)
    log = owned_file(layout.log_file("postgres"), account)
    settings = [
        "-p",
        str(target.port),
        "-c",
        f"listen_addresses={target.host}",
        "-c",
        f"unix_socket_directories={socket_dir_setting(sockets, target.port)}",
    ]
    pg_ctl = [bin_dir / "pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o", shlex.join(settings), "start"]
    try:
        check_output(as_account(account, pg_ctl), "pg_ctl start", cwd=layout.root)
    except SetupError as exc:
        raise SetupError(f"{exc}\nlast lines of {log}:\n{tail(log)}") from None
    postmaster_pid = int((data / "postmaster.pid").read_text().split()[0])
    write_marker(layout.marker(target.key), postmaster_pid, target.address)


def start_redis(target: Target, layout: Layout) -> None:
    data = make_dirs(layout.redis_dir)
    log = layout.log_file("redis")
    make_dirs(log.parent)
    pidfile = data / "redis-server.pid"
    pidfile.unlink(missing_ok=True)
    bind = "127.0.0.1" if target.host == "localhost" else target.host
    argv = [
        redis_binary(),
        "--port",
        str(target.port),
        "--bind",
        bind,
        "--daemonize",
        "yes",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        data,
        "--pidfile",
        pidfile,
        "--logfile",
        log,
    ]
    check_output(argv, "redis-server", cwd=layout.root)
    deadline = time.monotonic() + 15
    while redis_problem(target) or not pidfile.exists():
        if time.monotonic() > deadline:
            raise SetupError(f"Redis did not come up at {target.address}; last lines of {log}:\n{tail(log)}")
        time.sleep(0.1)
    write_marker(layout.marker(target.key), int(pidfile.read_text().strip()), target.address)


STARTERS: dict[str, Callable[[Target, Layout], None]] = {"postgres": start_postgres, "redis": start_redis}
# PostgreSQL's fast shutdown is SIGINT; Redis shuts down cleanly on SIGTERM (nothing to save with --save "").
STOP_SIGNALS = {"postgres": signal.SIGINT, "redis": signal.SIGTERM}
LABELS = {"postgres": ("PostgreSQL", "postgres"), "redis": ("Redis", "redis-server")}


def wait_gone(pid: int, comm: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while process_running(pid, comm):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_private(key: str, layout: Layout) -> Marker | None:
    """Stop the private server recorded under key; the marker it had, or None when none ran."""
    label, comm = LABELS[key]
    marker = read_marker(layout.marker(key), comm)
    if marker is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(marker.pid, STOP_SIGNALS[key])
    if not wait_gone(marker.pid, comm, SERVER_GRACE):
        say(f"{label}: pid {marker.pid} ignored a clean shutdown for {SERVER_GRACE:.0f} s; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(marker.pid, signal.SIGKILL)
        wait_gone(marker.pid, comm, 5)
    layout.marker(key).unlink(missing_ok=True)
    return marker


# --- services ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Services:
    """The two servers the project talks to, and which of them this call started."""

    database: Target
    redis: Target
    started: tuple[str, ...]


def needs_private_server(target: Target, problem: str | None, layout: Layout) -> bool:
    """Decide, before anything starts, whether target gets a private server; raise when it cannot."""
    if problem is None:
        return False
    if not target.loopback:
        raise SetupError(
            f"{target.label} at {target.address} ({target.env_name}) does not answer: {problem}. "
            f"{target.host} is not a loopback address, so no private server is started for it: "
            f"start that server, or point {target.env_name} at 127.0.0.1"
        )
    marker = read_marker(layout.marker(target.key), target.comm)
    if marker:
        raise SetupError(
            f"{target.label} at {target.address} does not answer, and the private {target.label} from {layout.root} "
            f"(pid {marker.pid}) serves {marker.address}: run `python3 scripts/devenv.py stop` first"
        )
    if target.tls:
        raise SetupError(f"Redis at {target.address} does not answer: {problem}; no private TLS Redis is started")
    if target.key == "postgres" and postgres_bin_dir() is None:
        raise SetupError("no initdb under /usr/lib/postgresql/*/bin: run `python3 scripts/devenv.py bootstrap` as root")
    if target.key == "redis" and redis_binary() is None:
        raise SetupError("no redis-server binary: run `python3 scripts/devenv.py bootstrap` as root")
    return True


def describe_start(target: Target, layout: Layout) -> str:
    data = layout.pg_data if target.key == "postgres" else layout.redis_dir
    return f"started a private server at {target.address} (data {data}, log {layout.log_file(target.key)})"


def ensure_services(layout: Layout) -> Services:
    """Make PostgreSQL and Redis answer at DATABASE_URL and REDIS_URL, and the database exist."""
    database = parse_database_url(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    cache = parse_redis_url(os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL)
    started: list[str] = []
    with exclusive_lock(layout.run / "devenv.lock"):
        # Both are judged before either starts, so a bad address leaves nothing running behind it.
        to_start = {
            database.key: needs_private_server(database, postgres_problem(database), layout),
            cache.key: needs_private_server(cache, redis_problem(cache), layout),
        }
        try:
            for target in (database, cache):
                if to_start[target.key]:
                    STARTERS[target.key](target, layout)
                    started.append(target.key)
                    say(f"{target.label}: {describe_start(target, layout)}")
                    continue
                marker = read_marker(layout.marker(target.key), target.comm)
                if marker and marker.address == target.address:
                    say(
                        f"{target.label}: using the private server at {target.address} (pid {marker.pid}, from {layout.root})"
                    )
                else:
                    say(f"{target.label}: using the server at {target.address}")
            ensure_database(database)
        except BaseException:
            for key in started:
                stop_private(key, layout)
            raise
    return Services(database, cache, tuple(started))


def maintenance_url(target: Target) -> str:
    """DATABASE_URL aimed at the `postgres` database, without the password (that goes in PGPASSWORD)."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    query = urlsplit(target.url).query
    return f"postgresql://{quote(target.user, safe='')}@{host}:{target.port}/postgres" + (f"?{query}" if query else "")


_CREATE_DATABASE_PY = """
import os, sys
try:
    import psycopg
    from psycopg import sql
except ImportError:
    sys.exit(3)
name = sys.argv[1]
with psycopg.connect(os.environ["SWITCHYARD_MAINTENANCE_URL"], autocommit=True, connect_timeout=10) as conn:
    if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
        print("exists")
    else:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        print("created")
"""

_CREATE_DATABASE_PSQL = """
SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_database WHERE datname = :'name') THEN 'exists' ELSE 'created' END;
SELECT format('CREATE DATABASE %I', :'name') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'name') \\gexec
"""


def ensure_database(target: Target) -> None:
    env = {**os.environ, "SWITCHYARD_MAINTENANCE_URL": maintenance_url(target)}
    if target.password:
        env["PGPASSWORD"] = target.password
    outcome = None
    if VENV_PYTHON.exists():
        result = subprocess.run(
            [str(VENV_PYTHON), "-c", _CREATE_DATABASE_PY, target.database], env=env, capture_output=True, text=True
        )
        if result.returncode not in (0, 3):
            raise SetupError(f"cannot create the database {target.database!r}:\n{result.stderr.strip()}")
        outcome = result.stdout.strip() if result.returncode == 0 else None
    if outcome is None:
        psql = shutil.which("psql") or (str(postgres_bin_dir() / "psql") if postgres_bin_dir() else None)
        if psql is None:
            raise SetupError("neither psycopg in .venv nor psql is there to create the database: run bootstrap first")
        variables = ["-v", "ON_ERROR_STOP=1", "-v", f"name={target.database}"]
        argv = [psql, "-X", "-q", "-tA", *variables, "-d", env["SWITCHYARD_MAINTENANCE_URL"]]
        result = subprocess.run(argv, input=_CREATE_DATABASE_PSQL, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise SetupError(f"cannot create the database {target.database!r}:\n{result.stderr.strip()}")
        outcome = result.stdout.split()[0]
    say(f"PostgreSQL: database {target.database!r} {'created' if outcome == 'created' else 'exists'}")


def env_lines(services: Services) -> str:
    return (
        f"export DATABASE_URL={shlex.quote(services.database.url)}\n"
        f"export REDIS_URL={shlex.quote(services.redis.url)}\n"
    )


# --- demo ----------------------------------------------------------------------------------


@dataclass
class Child:
    """A process the demo started, in a process group of its own."""

    name: str
    process: subprocess.Popen
    log: Path
    # The traffic generator may be a finite job: its clean exit is not a failure.
    may_finish: bool = False


def http_base(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def reachable_host(host: str) -> str:
    """Where to reach a server that binds host (a wildcard bind is reached over loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def demo_secret_files(layout: Layout, env: dict[str, str]) -> dict[str, str]:
    """NAME_FILE variables for each demo secret the environment does not already provide."""

    def kek() -> str:
        return base64.b64encode(secrets.token_bytes(32)).decode()

    generators = {
        "DJANGO_SECRET_KEY": ("django_secret_key", lambda: secrets.token_urlsafe(48)),
        "SWITCHYARD_KEK": ("kek", kek),
        "SWITCHYARD_AUDIT_SIGNING_KEY": ("audit_signing_key", kek),
    }
    files = {}
    for name, (file_name, generate) in generators.items():
        if env.get(name) or env.get(f"{name}_FILE"):
            continue
        path = make_dirs(layout.secrets, 0o700) / file_name
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(generate() + "\n")
            say(f"generated the demo secret {path}")
        files[f"{name}_FILE"] = str(path)
    return files


def demo_environment(layout: Layout, services: Services, site_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=services.database.url,
        REDIS_URL=services.redis.url,
        SWITCHYARD_SIMULATOR_URLS=",".join(f"{region}=http://127.0.0.1:{port}" for region, port in SIMULATORS),
        SWITCHYARD_SITE_URL=site_url,
        PYTHONUNBUFFERED="1",
        VIRTUAL_ENV=str(VENV),
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.update(demo_secret_files(layout, env))
    return env


def manage(args: list[str], env: dict[str, str]) -> None:
    check_call([VENV_PYTHON, "manage.py", *args], f"manage.py {args[0]}", cwd=REPO, env=env, stdin=subprocess.DEVNULL)


def has_manage_command(name: str, env: dict[str, str]) -> bool:
    argv = [str(VENV_PYTHON), "manage.py", "help", name]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True).returncode == 0


def require_free_ports(ports: list[tuple[str, int]]) -> None:
    for host, port in ports:
        with contextlib.suppress(OSError), socket.create_connection((reachable_host(host), port), timeout=1):
            raise SetupError(f"something already listens on {host}:{port} (another demo?): stop it first")


def spawn(name: str, argv: list, env: dict[str, str], layout: Layout, may_finish: bool = False) -> Child:
    log = make_dirs(layout.log) / f"{name}.log"
    argv = [str(arg) for arg in argv]
    with log.open("ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(argv)}\n".encode())
        out.flush()
        # A session of its own: the terminal's Ctrl-C reaches only us, and we stop the whole group in order.
        process = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    say(f"started {name} (pid {process.pid}), log {log}")
    return Child(name, process, log, may_finish)


def exit_description(code: int) -> str:
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"


def dead_child(children: list[Child]) -> Child | None:
    return next(
        (c for c in children if c.process.poll() is not None and not (c.may_finish and c.process.returncode == 0)), None
    )


def report_death(child: Child) -> None:
    say(f"{child.name} {exit_description(child.process.returncode)}; last lines of {child.log}:")
    for line in tail(child.log).splitlines():
        print(f"  {child.name} | {line}", file=sys.stderr)


def wait_healthy(url: str, children: list[Child]) -> None:
    # Loopback needs no proxy, and an http_proxy in the environment must not get in the way.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while time.monotonic() < deadline:
        if child := dead_child(children):
            report_death(child)
            raise SetupError(f"{child.name} stopped before the web server answered {url}")
        with contextlib.suppress(OSError, http.client.HTTPException), opener.open(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.5)
    raise SetupError(f"the web server did not answer {url} within {HEALTH_TIMEOUT:.0f} s; see {children[0].log}")


def supervise(children: list[Child]) -> int:
    """Wait until a child stops for good; the exit status for the demo."""
    finished: set[str] = set()
    while True:
        if child := dead_child(children):
            report_death(child)
            return 1
        for child in children:
            if child.may_finish and child.process.poll() == 0 and child.name not in finished:
                finished.add(child.name)
                say(f"{child.name} finished")
        time.sleep(1)


def stop_children(children: list[Child]) -> None:
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + CHILD_GRACE
    for child in children:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{child.name} did not stop within {CHILD_GRACE:.0f} s: killing it")
        # Worker processes can outlive their leader, so the group gets SIGKILL either way.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait()


def raise_interrupted(signum: int, _frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


def print_banner(site_url: str, layout: Layout) -> None:
    rule = "=" * 72
    print(
        f"\n{rule}\n"
        f"  Switchyard is running at {site_url}/\n"
        f"  Sign in at {site_url}/accounts/signin/ with the demo credentials printed above.\n"
        f"  Logs: {layout.log}/*.log    Stop: Ctrl-C\n"
        f"{rule}\n",
        flush=True,
    )


def demo_processes(host: str, port: int, layout: Layout) -> list[tuple[str, list]]:
    uvicorn, celery = VENV_BIN / "uvicorn", VENV_BIN / "celery"
    schedule = layout.run / "celerybeat-schedule"
    simulators = [
        (f"sim-{region}", [VENV_PYTHON, "-m", "bench.simulator", "--port", str(sim_port), "--name", f"{region}-sim"])
        for region, sim_port in SIMULATORS
    ]
    return [
        ("web", [uvicorn, "console.asgi:application", "--host", host, "--port", str(port), "--workers", "2"]),
        ("worker", [celery, "-A", "console", "worker", "-l", "info", "--concurrency", "2"]),
        ("beat", [celery, "-A", "console", "beat", "-l", "info", "-S", "apps.core.beat.LeaderScheduler",
                  "--schedule", schedule]),
        *simulators,
    ]


def run_demo() -> int:
    layout = Layout.from_env()
    host = os.environ.get("SWITCHYARD_HOST") or "127.0.0.1"
    port = int(os.environ.get("SWITCHYARD_PORT") or 8000)
    site_url = http_base(host, port)
    local_url = http_base(reachable_host(host), port)
    signal.signal(signal.SIGINT, raise_interrupted)
    signal.signal(signal.SIGTERM, raise_interrupted)
    children: list[Child] = []
    services: Services | None = None
    try:
        bootstrap()
        require_free_ports([(host, port), *(("127.0.0.1", sim_port) for _, sim_port in SIMULATORS)])
        services = ensure_services(layout)
        env = demo_environment(layout, services, site_url)
        manage(["migrate", "--noinput"], env)
        manage(["seed_demo"], env)
        for name, argv in demo_processes(host, port, layout):
            children.append(spawn(name, argv, env, layout))
        wait_healthy(f"{local_url}/healthz", children)
        if has_manage_command("demo_traffic", env):
            children.append(spawn("traffic", [VENV_PYTHON, "manage.py", "demo_traffic"], env, layout, may_finish=True))
        print_banner(site_url, layout)
        return supervise(children)
    except Interrupted as exc:
        say(f"{exc}: shutting down")
        return 0
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_children(children)
        for key in services.started if services else ():
            if marker := stop_private(key, layout):
                say(f"{LABELS[key][0]}: stopped the private server at {marker.address} (pid {marker.pid})")


# --- command line --------------------------------------------------------------------------


def cmd_bootstrap(_args: argparse.Namespace) -> int:
    bootstrap()
    return 0


def cmd_services(args: argparse.Namespace) -> int:
    services = ensure_services(Layout.from_env())
    lines = env_lines(services)
    if args.print_env:
        sys.stdout.write(lines)
        sys.stdout.flush()
    if args.env_file:
        path = Path(args.env_file)
        make_dirs(path.parent)
        path.write_text(lines)
        say(f"wrote {path}")
    return 0


def cmd_demo(_args: argparse.Namespace) -> int:
    return run_demo()


def cmd_stop(_args: argparse.Namespace) -> int:
    layout = Layout.from_env()
    with exclusive_lock(layout.run / "devenv.lock"):
        for key, (label, _) in LABELS.items():
            marker = stop_private(key, layout)
            if marker:
                say(f"{label}: stopped the private server at {marker.address} (pid {marker.pid})")
            else:
                say(f"{label}: no private server running from {layout.root}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devenv.py",
        description="Set up and run Switchyard on a development machine (stdlib only: runs before .venv exists).",
        epilog="Private state lives under $SWITCHYARD_VAR_DIR (default <repo>/var).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "bootstrap", help="install missing system packages, create .venv, install requirements.txt when it changed"
    ).set_defaults(func=cmd_bootstrap)
    services = commands.add_parser(
        "services", help="make PostgreSQL and Redis answer at DATABASE_URL/REDIS_URL, starting private ones if needed"
    )
    services.add_argument("--print-env", action="store_true", help="print `export` lines for eval on stdout")
    services.add_argument("--env-file", metavar="PATH", help="write the `export` lines to PATH")
    services.set_defaults(func=cmd_services)
    commands.add_parser(
        "demo", help="bootstrap, services, migrate, seed_demo, then run the whole system until Ctrl-C"
    ).set_defaults(func=cmd_demo)
    commands.add_parser("stop", help="stop the private PostgreSQL and Redis recorded in var/run").set_defaults(
        func=cmd_stop
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SetupError as exc:
        say(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
