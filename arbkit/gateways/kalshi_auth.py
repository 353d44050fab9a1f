"""Kalshi request signing: RSA-PSS/SHA-256 (salt = digest length) or Ed25519, base64.

message = timestamp_ms + METHOD + path, where path includes ``/trade-api/v2`` (or
``/trade-api/ws/v2``) and excludes the query string. The body is not signed.
Key material never appears in repr/str/logs: only the key id's first 4 characters do.

Pre-signing: because the body is not signed, the headers for a hot (method, path) — the
create-order POST — can be signed ahead. :meth:`KalshiAuth.presign` keeps a small pool of
unused signed header sets per registered path, refreshed by a daemon thread;
:meth:`KalshiAuth.headers` hands one out (once: each signature is used for one request) if it
is younger than ``max_age_s``, else signs inline. The venue's timestamp window is larger.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

KEY_HEADER = "KALSHI-ACCESS-KEY"
TS_HEADER = "KALSHI-ACCESS-TIMESTAMP"
SIG_HEADER = "KALSHI-ACCESS-SIGNATURE"

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class KalshiAuthError(RuntimeError):
    """Missing or unusable credentials (never carries key material)."""


def sign_path(path: str) -> str:
    """The part of a URL path that is signed: no query string."""
    return path.split("?", 1)[0]


def message(timestamp_ms: int | str, method: str, path: str) -> bytes:
    return f"{timestamp_ms}{method.upper()}{sign_path(path)}".encode()


def _load_private(pem: bytes) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        # The exception text could echo PEM bytes; keep only the class name.
        raise KalshiAuthError(f"private key is not a usable PEM ({type(exc).__name__})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise KalshiAuthError("private key must be RSA or Ed25519")
    return key


def load_public_key(pem: bytes | str) -> PublicKey:
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise KalshiAuthError("public key must be RSA or Ed25519")
    return key


def verify(public_key: PublicKey, signature_b64: str, msg: bytes) -> bool:
    """Server side (the local exchange): True iff the signature is valid for ``msg``."""
    try:
        sig = base64.b64decode(signature_b64, validate=True)
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(sig, msg, _PSS, hashes.SHA256())
        else:
            public_key.verify(sig, msg)
    except (InvalidSignature, ValueError):
        return False
    return True


class _Presigner:
    """Keeps a small pool of fresh, unused signed header sets per registered (METHOD, path).

    A daemon thread tops the pools up and drops entries older than half the age bound, every
    quarter of it; it is not woken by a use (a signature made while the caller is sending
    would compete with it), only when a pool ran dry. Signing releases the GIL.
    """

    def __init__(self, auth: KalshiAuth, max_age_s: float, depth: int) -> None:
        self.auth = auth
        self.max_age_ns = int(max_age_s * 1e9)
        self.depth = max(1, depth)
        self.paths: set[tuple[str, str]] = set()
        self.ready: dict[tuple[str, str], list[tuple[int, dict[str, str]]]] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.hits = 0
        self.misses = 0
        self.thread = threading.Thread(target=self._run, name="kalshi-presign", daemon=True)
        self.thread.start()

    def take(self, key: tuple[str, str]) -> dict[str, str] | None:
        now = time.monotonic_ns()
        got = None
        with self.lock:
            pool = self.ready.get(key)
            while pool:
                t, h = pool.pop(0)  # oldest first: each is used once
                if now - t <= self.max_age_ns:
                    got = h
                    break
            empty = not pool
        if empty:
            self.wake.set()
        if got is None:
            self.misses += 1
            return None
        self.hits += 1
        return got

    def _run(self) -> None:
        period_s = self.max_age_ns / 4e9
        while not self.stopping:
            for key in list(self.paths):
                now = time.monotonic_ns()
                with self.lock:
                    pool = self.ready.setdefault(key, [])
                    pool[:] = [(t, h) for t, h in pool if now - t < self.max_age_ns // 2]
                    need = self.depth - len(pool)
                for _ in range(need):
                    t = time.monotonic_ns()
                    h = self.auth._sign_headers(key[0], key[1], None)
                    with self.lock:
                        self.ready[key].append((t, h))
            self.wake.wait(period_s)
            self.wake.clear()

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout=2.0)


class KalshiAuth:
    """Signs requests for one API key. ``headers(method, path)`` is all callers need."""

    __slots__ = ("_key", "_presigner", "key_id")

    def __init__(self, key_id: str, private_key: PrivateKey) -> None:
        if not key_id:
            raise KalshiAuthError("empty Kalshi API key id")
        self.key_id = key_id
        self._key = private_key
        self._presigner: _Presigner | None = None

    def presign(self, method: str, path: str, *, max_age_s: float = 1.0, depth: int = 4) -> None:
        """Keep ``depth`` signed header sets for ``method path`` ready ahead of use (see the
        module doc). No handed-out timestamp is older than ``max_age_s`` (the venue's window
        is larger); each signature is used for one request only."""
        if self._presigner is None:
            self._presigner = _Presigner(self, max_age_s, depth)
        self._presigner.paths.add((method.upper(), sign_path(path)))
        self._presigner.wake.set()

    def stop_presign(self) -> None:
        if self._presigner is not None:
            self._presigner.stop()
            self._presigner = None

    @property
    def presign_stats(self) -> tuple[int, int]:
        """(hits, misses) of pre-signed header requests."""
        p = self._presigner
        return (p.hits, p.misses) if p is not None else (0, 0)

    @classmethod
    def from_pem(cls, key_id: str, pem: bytes | str) -> KalshiAuth:
        return cls(key_id, _load_private(pem.encode() if isinstance(pem, str) else pem))

    @classmethod
    def from_key_file(cls, key_id: str, path: str | os.PathLike[str]) -> KalshiAuth:
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise KalshiAuthError(f"cannot read private key file: {exc.strerror}") from None
        return cls.from_pem(key_id, pem)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> KalshiAuth:
        """KALSHI_API_KEY_ID plus KALSHI_PRIVATE_KEY_PATH (file) or KALSHI_PRIVATE_KEY (PEM)."""
        e = os.environ if env is None else env
        key_id = e.get("KALSHI_API_KEY_ID", "")
        if not key_id:
            raise KalshiAuthError("KALSHI_API_KEY_ID is not set")
        if e.get("KALSHI_PRIVATE_KEY_PATH"):
            return cls.from_key_file(key_id, e["KALSHI_PRIVATE_KEY_PATH"])
        if e.get("KALSHI_PRIVATE_KEY"):
            return cls.from_pem(key_id, e["KALSHI_PRIVATE_KEY"])
        raise KalshiAuthError("set KALSHI_PRIVATE_KEY_PATH or KALSHI_PRIVATE_KEY")

    @property
    def key_type(self) -> str:
        return "rsa" if isinstance(self._key, rsa.RSAPrivateKey) else "ed25519"

    def sign(self, msg: bytes) -> str:
        if isinstance(self._key, rsa.RSAPrivateKey):
            sig = self._key.sign(msg, _PSS, hashes.SHA256())
        else:
            sig = self._key.sign(msg)
        return base64.b64encode(sig).decode("ascii")

    def headers(self, method: str, path: str, *, timestamp_ms: int | None = None) -> dict[str, str]:
        p = self._presigner
        if p is not None and timestamp_ms is None:
            key = (method.upper(), sign_path(path))
            if key in p.paths:
                got = p.take(key)
                if got is not None:
                    return dict(got)
        return self._sign_headers(method, path, timestamp_ms)

    def _sign_headers(self, method: str, path: str, timestamp_ms: int | None) -> dict[str, str]:
        ts = str(time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms)
        return {
            KEY_HEADER: self.key_id,
            TS_HEADER: ts,
            SIG_HEADER: self.sign(message(ts, method, path)),
        }

    def public_key_pem(self) -> str:
        return (
            self._key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def __repr__(self) -> str:
        return f"KalshiAuth(key_id='{self.key_id[:4]}…', key_type={self.key_type})"

    __str__ = __repr__

    def __getstate__(self) -> None:
        raise TypeError("KalshiAuth holds a private key and is not picklable")


def generate_key_pair(
    private_key_path: str | os.PathLike[str], *, key_type: str = "rsa"
) -> tuple[PrivateKey, str]:
    """Make a key pair, write the private PEM with mode 0600; return (key, public PEM).

    RSA keys are written as PKCS#1 (what Kalshi hands out), Ed25519 as PKCS#8.
    """
    key: PrivateKey
    if key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    elif key_type == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
        fmt = serialization.PrivateFormat.PKCS8
    else:
        raise ValueError(f"unknown key_type {key_type!r}")
    pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    path = Path(private_key_path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return key, public_pem
