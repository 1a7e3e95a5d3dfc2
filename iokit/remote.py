"""Remote storage: an S3-protocol endpoint, uploads, and shard sets read from a URL.

Training data usually lives in an object store. This module connects the kit to one:

* :func:`endpoint` says where ``s3://`` URLs go. With ``AWS_ENDPOINT_URL_S3`` or
  ``AWS_ENDPOINT_URL`` set (MinIO, Ceph, a cloud bucket's endpoint), there, with the standard
  credentials (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``), bucket
  ``IOKIT_S3_BUCKET`` (default ``iokit``). Inside :func:`loopback_s3`, the kit's own server.
* :func:`s3_endpoint` is the one to use: yours when the environment names it, else
  :func:`loopback_s3`, which starts a real S3-protocol server on this machine (moto's standalone
  server, a pure-Python S3 implementation) on a free loopback port, creates the bucket, and
  stops the server afterwards; the server process ends with its parent, even after ``kill
  -9`` (as the kit's worker processes do, :mod:`iokit.parallel`).
* The loopback server is real S3 protocol, not S3's performance: moto answers every GET, a
  range request too, from a copy of the whole object, so its per-request cost grows with the
  object's size (a few milliseconds more per 10 MB here). Measure it on small objects, and keep
  shards uploaded to it small (``max_shard_bytes``); real stores do not pay this.
* :func:`upload` puts a file or a folder (a shard set) under a URL; :func:`open_remote_shards`
  opens a shard set from a URL, checking every index as :func:`iokit.shards.open_shards` does,
  and reads tokens with range requests through a storage (:class:`~iokit.storage.
  FsspecStorage`, or a :class:`~iokit.storage.SimulatedStore` over it): a window of a raw shard
  is one request for its bytes, one of a block-compressed shard one request per block it
  touches.

Every client here has short timeouts and few retries (:data:`CONNECT_TIMEOUT_S`,
:data:`READ_TIMEOUT_S`, :data:`RETRIES`): an unreachable endpoint, wrong credentials, a missing
bucket or key, or an object that changed on the server while being read is the kit's
:class:`~iokit.errors.StorageError` naming the URL and what to do, within seconds.

Needs the ``s3`` extra (fsspec, s3fs, moto[server]): ``pip install -e '.[s3]'``; without it
the local disk and the simulated stores work as before and ``s3://`` says what to install.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iokit.errors import FormatError, IokitError, StorageError
from iokit.shards import (
    _SHARD_NAME,
    BlockTokens,
    Shard,
    ShardSet,
    check_shard_set,
    check_vocabulary,
    checksum_of,
    read_index,
)
from iokit.storage import FsspecStorage, as_url

EXTRA = "pip install -e '.[s3]'"
DEFAULT_BUCKET = "iokit"
CONNECT_TIMEOUT_S = 3.0  # seconds to open a connection to the endpoint
READ_TIMEOUT_S = 10.0  # seconds a response may take to start
RETRIES = 2  # attempts per request (s3fs's own); the client's retries are off
SERVER_START_S = 30.0  # at most this long for the loopback server to answer
SERVER_BUFFER_BYTES = 1 << 30  # objects up to this size stay in the loopback server's memory


def require_fsspec():
    """fsspec, or the kit's error naming the extra to install."""
    try:
        import fsspec
    except ImportError:
        raise IokitError(f"reading URLs needs fsspec (the 's3' extra): {EXTRA}") from None
    return fsspec


def require_s3():
    """s3fs, or the kit's error naming the extra to install."""
    require_fsspec()
    try:
        import s3fs
    except ImportError:
        raise IokitError(f"s3:// URLs need s3fs (the 's3' extra): {EXTRA}") from None
    return s3fs


@dataclass(frozen=True)
class S3Endpoint:
    """Where ``s3://`` goes and with which credentials (``url=None``: AWS's own endpoint)."""

    url: str | None
    key: str | None
    secret: str | None
    region: str | None
    bucket: str
    about: str
    token: str | None = None  # AWS_SESSION_TOKEN, for temporary credentials

    def options(self) -> dict:
        """The s3fs options: this endpoint and credentials, short timeouts, few retries."""
        client = {}
        if self.url:
            client["endpoint_url"] = self.url
        if self.region:
            client["region_name"] = self.region
        return {"key": self.key, "secret": self.secret, "token": self.token,
                "client_kwargs": client,
                "config_kwargs": {"connect_timeout": CONNECT_TIMEOUT_S,
                                  "read_timeout": READ_TIMEOUT_S,
                                  "retries": {"max_attempts": 1, "mode": "standard"},
                                  "max_pool_connections": 64}}

    def __str__(self) -> str:
        return f"{self.url or 'AWS'} ({self.about})"


_active: list[S3Endpoint] = []  # the loopback servers running in this process, innermost last


def endpoint_from_env() -> S3Endpoint:
    """The endpoint the standard AWS environment variables name."""
    url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return S3Endpoint(url or None, os.environ.get("AWS_ACCESS_KEY_ID"),
                      os.environ.get("AWS_SECRET_ACCESS_KEY"),
                      os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
                      os.environ.get("IOKIT_S3_BUCKET", DEFAULT_BUCKET),
                      "from AWS_ENDPOINT_URL and the AWS_* credentials",
                      os.environ.get("AWS_SESSION_TOKEN"))


def endpoint() -> S3Endpoint:
    """The loopback server started last by :func:`loopback_s3`, else the environment's."""
    return _active[-1] if _active else endpoint_from_env()


def endpoint_name() -> str:
    return str(endpoint())


def filesystem(url: str):
    """``(fs, path)``: the fsspec filesystem for ``url`` and the path within it (``s3://`` on
    :func:`endpoint`, a plain path on the local disk)."""
    fsspec = require_fsspec()
    url = as_url(url)
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    if protocol in ("s3", "s3a"):
        s3fs = require_s3()
        fs = s3fs.S3FileSystem(**endpoint().options())
        fs.retries = RETRIES  # s3fs's own attempts per request (a class setting)
        return fs, fs._strip_protocol(url)
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise StorageError(f"{url}: fsspec cannot read this kind of URL ({exc}); use file://, "
                           f"memory://, s3:// or http(s)://, and for s3:// {EXTRA}.") from None


def storage_error(url: str, exc: BaseException) -> StorageError:
    """The kit's error for a failed request to ``url``: which URL, what went wrong, what to do."""
    url = as_url(url)
    where = f"{url} (endpoint {endpoint()})" if url.startswith(("s3://", "s3a://")) else url
    text = f"{type(exc).__name__}: {exc}"
    if type(exc).__name__ == "FileExpired":
        return StorageError(f"{where}: the object changed on the server while it was being "
                            "read (its ETag no longer matches); open it again, and upload it "
                            "again if it was overwritten by mistake.")
    if isinstance(exc, FileNotFoundError):
        what = "bucket or key" if where != url else "file or object"
        return StorageError(f"{where}: no such {what} ({exc}); check the URL, or upload "
                            "the data first (iokit.remote.upload).")
    if isinstance(exc, PermissionError) or "AccessDenied" in text or "InvalidAccessKeyId" in text:
        return StorageError(f"{where}: access denied: the credentials were refused ({exc}); "
                            "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and that they "
                            "may read this bucket).")
    if any(s in text for s in ("Could not connect", "Connect timeout", "Cannot connect",
                               "Connection refused", "ConnectTimeout", "EndpointConnection")):
        return StorageError(f"{where}: cannot reach the endpoint ({exc}); check "
                            "AWS_ENDPOINT_URL (or start the kit's own server with "
                            "iokit.remote.loopback_s3()) and the network.")
    if any(s in text for s in ("Read timeout", "ReadTimeout", "TimeoutError")):
        return StorageError(f"{where}: the endpoint did not answer within {READ_TIMEOUT_S:g} s "
                            f"({exc}); check that it is up and not overloaded.")
    return StorageError(f"{where}: the request failed ({text}); check the URL, the endpoint "
                        "and the credentials.")


# --------------------------------------------------------------------------- the loopback server


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(port: int, parent: int) -> None:  # pragma: no cover - runs in the server process
    """The server process: end with the parent, then run moto's S3 server on loopback."""
    from iokit.parallel import _die_with_parent

    _die_with_parent(True, parent)
    from moto.server import main

    main(["-H", "127.0.0.1", "-p", str(port)])


@contextmanager
def loopback_s3(bucket: str = DEFAULT_BUCKET, *, auth: bool = False) -> Iterator[S3Endpoint]:
    """A real S3-protocol server (moto) on a free loopback port, with ``bucket`` created;
    ``s3://`` URLs go to it inside the ``with``. The server process ends when the ``with``
    does, and with this process if it is killed. ``auth=True`` makes the server check
    credentials (every key is unknown to it: a test of wrong credentials)."""
    require_s3()
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise IokitError(f"the loopback S3 server needs moto[server] (the 's3' extra): {EXTRA}"
                         ) from None
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "INITIAL_NO_AUTH_ACTION_COUNT"}
    # moto answers every GET, a range too, from a copy of the whole object, read from a
    # temporary file when the object is larger than this buffer: keep objects in memory.
    env["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = str(SERVER_BUFFER_BYTES)
    if auth:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"  # moto: check credentials from the start
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from iokit.remote import _serve; "
         "_serve(int(sys.argv[1]), int(sys.argv[2]))", str(port), str(os.getpid())],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(proc, port, log)
        ep = S3Endpoint(url, "iokit", "iokit-secret", None, bucket,
                        f"loopback moto server, process {proc.pid}")
        _active.append(ep)
        try:
            if not auth:
                make_bucket(bucket)
            yield ep
        finally:
            _active.remove(ep)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_for_server(proc: subprocess.Popen, port: int, log) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            tail = log.read()[-600:].decode(errors="replace")
            raise StorageError(f"the loopback S3 server (moto) ended at start with code "
                               f"{proc.returncode}: {tail.strip()}; check that "
                               f"moto[server] is installed ({EXTRA}).")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise StorageError(f"the loopback S3 server on port {port} did not answer within "
                       f"{SERVER_START_S:g} s; the machine may be overloaded: try again.")


def uses_own_endpoint() -> bool:
    """True when the environment names an endpoint or bucket (``AWS_ENDPOINT_URL[_S3]``,
    ``IOKIT_S3_BUCKET``): the kit then reads from there instead of starting its own server."""
    return any(os.environ.get(v) for v in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL",
                                           "IOKIT_S3_BUCKET"))


@contextmanager
def s3_endpoint() -> Iterator[S3Endpoint]:
    """Your endpoint if the environment names one (:func:`uses_own_endpoint`), else the kit's
    loopback server for the duration of the ``with``."""
    if uses_own_endpoint():
        require_s3()
        yield endpoint_from_env()
    else:
        with loopback_s3() as ep:
            yield ep


def make_bucket(bucket: str) -> None:
    """Create ``bucket`` on the endpoint if it is not there yet."""
    fs, _ = filesystem(f"s3://{bucket}")
    try:
        if not fs.exists(bucket):
            fs.call_s3("create_bucket", Bucket=bucket)
            fs.invalidate_cache()
    except Exception as exc:  # noqa: BLE001
        raise storage_error(f"s3://{bucket}", exc) from None


# --------------------------------------------------------------------------- uploads


def upload(local, url: str) -> list[str]:
    """Put a file, or every file of a folder (a shard set: ``.bin``, ``.idx``, vocabulary), at
    ``url`` (for a folder, ``url/<name>``); returns the URLs written. An ``s3://`` bucket that
    is missing is created."""
    local, url = Path(local), as_url(url).rstrip("/")
    files = sorted(p for p in local.iterdir() if p.is_file()) if local.is_dir() else [local]
    if not files or not files[0].exists():
        raise StorageError(f"{local}: nothing to upload; give a file or a folder of files.")
    fs, root = filesystem(url)
    if url.startswith(("s3://", "s3a://")):
        make_bucket(root.split("/", 1)[0])
    out = []
    for p in files:
        target = f"{url}/{p.name}" if local.is_dir() else url
        try:
            fs.put_file(str(p), f"{root}/{p.name}" if local.is_dir() else root)
        except Exception as exc:  # noqa: BLE001
            raise storage_error(target, exc) from None
        out.append(target)
    fs.invalidate_cache()
    return out


# --------------------------------------------------------------------------- remote shards


class RemoteTokens:
    """The tokens of a raw ``.bin`` at a URL: each read is one range request for its bytes."""

    def __init__(self, storage, url: str, dtype: np.dtype, n_tokens: int):
        self.storage, self.url, self.dtype, self.n_tokens = storage, url, dtype, n_tokens

    def read(self, start: int, stop: int) -> np.ndarray:
        size = self.dtype.itemsize
        data = self.storage.read(self.url, start * size, (stop - start) * size)
        return np.frombuffer(data, dtype=self.dtype)

    def close(self) -> None:
        pass


@dataclass
class RemoteShard(Shard):
    """A shard whose files are at a URL; its checksum is computed over range requests."""

    storage: object = None

    def compute_checksum(self) -> int:
        return checksum_of(self.storage.read_chunks(self.bin_path, 4 << 20))

    def verify(self) -> None:
        """Recompute the ``.bin`` checksum over range requests; FormatError if it differs."""
        got = self.compute_checksum()
        if got != self.checksum:
            raise FormatError(
                f"{self.bin_path}: checksum mismatch: {self.idx_path.rsplit('/', 1)[-1]} field "
                f"'checksum' is {self.checksum:016x}, the .bin's bytes give {got:016x}. The "
                ".bin changed on the server or is corrupt: upload the shard folder again.")


def open_remote_shards(url: str, storage=None, *, verify: bool = False, tokenizer=None,
                       prefix: str = "shard") -> ShardSet:
    """The shard set at ``url`` (uploaded with :func:`upload`), checked as
    :func:`~iokit.shards.open_shards` checks a folder; tokens are read through ``storage``
    (an :class:`~iokit.storage.FsspecStorage` by default, or a simulated store over one).
    ``verify=True`` also recomputes every checksum (reading every byte); ``tokenizer``, if
    given, must be the one the shards were written with."""
    storage = storage if storage is not None else FsspecStorage()
    url = as_url(url).rstrip("/")
    fs, root = filesystem(url)
    try:
        fs.invalidate_cache(root)  # list what is there now, not what was there before
        names = [str(n).rstrip("/").rsplit("/", 1)[-1] for n in fs.ls(root, detail=False)]
    except Exception as exc:  # noqa: BLE001
        raise storage_error(url, exc) from None
    found = sorted(int(m["index"]) for m in map(_SHARD_NAME.match, names)
                   if m and m["prefix"] == prefix and m["ext"] == "idx")
    if not found:
        raise FormatError(f"{url}: no {prefix}-NNNNN.idx objects here; upload a shard folder "
                          "with iokit.remote.upload.")
    if found != list(range(len(found))):
        gap = min(set(range(len(found))) - set(found))
        raise FormatError(f"{url}/{prefix}-{gap:05d}.idx: missing (the shards must be numbered "
                          "from 00000 without gaps); upload the shard folder again.")
    shards = [_open_remote_shard(storage, f"{url}/{prefix}-{i:05d}", i) for i in found]
    check_shard_set(shards)
    shard_set = ShardSet(shards, url)
    if verify:
        shard_set.verify()
    if tokenizer is not None:
        check_vocabulary(shard_set, tokenizer)
    return shard_set


def _open_remote_shard(storage, stem: str, index: int) -> RemoteShard:
    bin_url, idx_url = f"{stem}.bin", f"{stem}.idx"
    raw = storage.read(idx_url, 0, storage.size(idx_url))
    fields = read_index(idx_url, index, raw=raw)
    size = storage.size(bin_url)
    if size != fields["bin_size"]:
        raise FormatError(
            f"{bin_url}: has {size:,} bytes, but {idx_url.rsplit('/', 1)[-1]} field 'bin size' "
            f"says {fields['bin_size']:,}: the .idx and .bin disagree (changed on the server, "
            "or from different runs); upload the shard folder again.")
    if fields["blocks"] is not None:
        source = BlockTokens(bin_url, fields["dtype"], fields["n_tokens"], fields["blocks"],
                             storage=storage)
    else:
        source = RemoteTokens(storage, bin_url, fields["dtype"], fields["n_tokens"])
    return RemoteShard(bin_path=bin_url, idx_path=idx_url, source=source, storage=storage,
                       **fields)

