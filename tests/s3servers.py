"""Real S3 servers on loopback for the test suite (helper module, not tests).

Two kinds, each started by a script in the repository's ``tools/`` directory:

- ``rgw``: Ceph RADOS Gateway (one mon, one memstore OSD, radosgw on plain
  HTTP), ``tools/ceph_rgw_up.sh`` / ``tools/ceph_rgw_down.sh``.  Needs the
  Debian packages ceph-mon ceph-osd radosgw ceph-common.
- ``moto``: moto's S3 server, ``tools/moto_up.sh`` / ``tools/moto_down.sh``.
  Needs ``moto[server]`` in the running interpreter.

The scripts print ``KEY=value`` lines (S3_ENDPOINT, S3_ACCESS_KEY,
S3_SECRET_KEY, S3_REGION), which :func:`start_rgw` / :func:`start_moto` turn
into an :class:`S3Server`.  :func:`stop` stops the daemons by their recorded
PIDs.  Used by the fixtures in ``tests/conftest.py``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"

# commands ceph_rgw_up.sh needs (Debian: ceph-mon ceph-osd radosgw ceph-common)
RGW_COMMANDS = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph",
                "monmaptool", "ceph-authtool", "curl")

# environment variables that would make a subprocess use other credentials,
# another profile or another CA bundle than the test server's
_AWS_ENV_DROP = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CA_BUNDLE",
                 "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")

_bucket_counter = itertools.count()


@dataclass
class S3Server:
    """A running S3 test server and how to reach it."""

    name: str            # "rgw" or "moto"
    endpoint_url: str    # e.g. "http://127.0.0.1:40123"
    access_key: str
    secret_key: str
    region: str
    data_dir: Path       # DATA_DIR given to the tools/ scripts (logs in data_dir/log)
    start_seconds: float = 0.0   # wall time the start script took
    https_endpoint_url: str | None = None  # RGW only: the same gateway over HTTPS
    ca_bundle: str | None = None           # the self-signed certificate of the HTTPS endpoint

    def client(self):
        """A boto3 S3 client for this server (path-style, checksums only when required).

        Independent of AWS_PROFILE / config files in the environment.
        """
        import boto3
        import botocore.session
        from botocore.config import Config

        # ignore AWS_PROFILE: a profile missing from ~/.aws/config would raise
        # ProfileNotFound even with explicit keys
        bsession = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
        session = boto3.session.Session(botocore_session=bsession)
        return session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                s3={"addressing_style": "path"},
            ),
        )

    def new_bucket(self, prefix: str = "t") -> str:
        """Create a fresh, uniquely named bucket and return its name."""
        prefix = prefix.lower().strip("-.")[:30] or "t"
        name = f"{prefix}-{next(_bucket_counter)}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def upload_tree(self, local_dir, bucket: str, key_prefix: str = "") -> int:
        """Upload every file under local_dir (one PUT per file); return the object count.

        Keys are the files' relative POSIX paths, joined to key_prefix with "/".
        """
        root = Path(local_dir)
        client = self.client()
        prefix = key_prefix.rstrip("/")
        count = 0
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            key = f"{prefix}/{rel}" if prefix else rel
            client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
            count += 1
        return count

    def env(self) -> dict:
        """os.environ copy for a subprocess that should reach this server with default credentials."""
        env = dict(os.environ)
        for var in _AWS_ENV_DROP:
            env.pop(var, None)
        env["AWS_ACCESS_KEY_ID"] = self.access_key
        env["AWS_SECRET_ACCESS_KEY"] = self.secret_key
        env["AWS_DEFAULT_REGION"] = self.region
        return env

    def apply_env(self, monkeypatch) -> None:
        """Point this process's default AWS credentials at this server (for in-process storage clients)."""
        for k, v in self.env().items():
            if k.startswith("AWS_"):
                monkeypatch.setenv(k, v)
        for k in ("AWS_PROFILE", "AWS_CA_BUNDLE"):
            monkeypatch.delenv(k, raising=False)

    def url(self, bucket: str, prefix: str = "") -> str:
        return f"s3://{bucket}/{prefix}"


# ---------------------------------------------------------------- ports

def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# ---------------------------------------------------------------- start / stop

def missing_rgw_commands() -> list[str]:
    """Commands needed by tools/ceph_rgw_up.sh that are not on PATH."""
    return [c for c in RGW_COMMANDS if shutil.which(c) is None]


def start_rgw(data_dir, port: int | None = None, timeout: float = 300) -> S3Server:
    """Start a single-host Ceph cluster + radosgw in data_dir; RGW on 127.0.0.1:port."""
    missing = missing_rgw_commands()
    if missing:
        raise RuntimeError(
            "cannot start Ceph RGW, missing commands: " + " ".join(missing)
            + " (apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw ceph-common)")
    port = port or free_port()
    mon_port = port + 1 if port < 65535 and port_is_free(port + 1) else free_port()
    while mon_port == port:
        mon_port = free_port()
    ssl_port = free_port()
    while ssl_port in (port, mon_port):
        ssl_port = free_port()
    return _start("rgw", "ceph_rgw_up.sh", data_dir, [str(port), str(mon_port)], {"RGW_SSL_PORT": str(ssl_port)},
                  timeout)


def start_moto(data_dir, port: int | None = None, timeout: float = 120) -> S3Server:
    """Start moto's S3 server (this interpreter's moto) on 127.0.0.1:port."""
    port = port or free_port()
    return _start("moto", "moto_up.sh", data_dir, [str(port)], {"PYTHON": sys.executable}, timeout)


def stop(server: S3Server, purge: bool = False) -> None:
    """Stop the server's processes (by recorded PID); purge also removes its data_dir (rgw only)."""
    _down(server.name, Path(server.data_dir), purge)


def _down(name: str, data_dir: Path, purge: bool = False) -> None:
    if name == "rgw":
        cmd = [str(TOOLS / "ceph_rgw_down.sh"), str(data_dir)] + (["--purge"] if purge else [])
    elif name == "moto":
        cmd = [str(TOOLS / "moto_down.sh"), str(data_dir)]
    else:
        raise ValueError(f"unknown S3 server kind {name!r}")
    subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def _start(name, script, data_dir, args, extra_env, timeout) -> S3Server:
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **extra_env)
    t0 = time.monotonic()
    try:
        proc = subprocess.run([str(TOOLS / script), str(data_dir), *args], env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
        failure = None if proc.returncode == 0 else f"{script} exited with {proc.returncode}"
        stdout, stderr = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        failure = f"{script} did not finish within {timeout:.0f} s"
        stdout, stderr = _text(e.stdout), _text(e.stderr)
    except BaseException:   # e.g. KeyboardInterrupt: stop whatever already started
        _down(name, data_dir)
        raise
    elapsed = time.monotonic() - t0
    values = dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    if failure is None and "S3_ENDPOINT" not in values:
        failure = f"{script} printed no S3_ENDPOINT"
    if failure is not None:
        _down(name, data_dir)   # do not leave half-started daemons behind
        raise RuntimeError(f"{name} S3 server failed to start: {failure}\n"
                           f"--- {script} stderr (tail)\n{_tail(stderr)}\n"
                           + _log_tails(data_dir / "log"))
    return S3Server(name=name, endpoint_url=values["S3_ENDPOINT"],
                    access_key=values["S3_ACCESS_KEY"], secret_key=values["S3_SECRET_KEY"],
                    region=values.get("S3_REGION", "us-east-1"), data_dir=data_dir,
                    start_seconds=elapsed, https_endpoint_url=values.get("S3_ENDPOINT_HTTPS"),
                    ca_bundle=values.get("S3_CA_BUNDLE"))


def _text(b) -> str:
    if b is None:
        return ""
    return b.decode(errors="replace") if isinstance(b, bytes) else b


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _log_tails(log_dir: Path, lines: int = 30) -> str:
    if not log_dir.is_dir():
        return f"(no log directory {log_dir})"
    parts = []
    for f in sorted(log_dir.iterdir()):
        if f.is_file() and f.stat().st_size:
            text = f.read_text(errors="replace")
            parts.append(f"--- {f} (tail)\n{_tail(text, lines)}")
    return "\n".join(parts) or f"(empty logs in {log_dir})"
