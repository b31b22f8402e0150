"""API keys: stored hashed, with scopes.

A key is a random 256-bit token (``argus_<key id>_<secret>``) shown once at creation; only its
SHA-256 is stored (table ``api_keys``, or ``security.api_key_hashes`` in settings). SHA-256 and not
argon2: the tokens are machine-generated with 256 bits of entropy, so a slow hash adds nothing against
brute force, while a fast deterministic hash allows an indexed lookup. Plain-text ``api_keys`` from
settings (the development default ``dev-key``) are hashed when the key store is built and the store
keeps only the hashes.

Scopes: ``read`` (search, cards, downloads), ``upload`` (POST /v1/assets), ``admin`` (everything).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from core import db
from core.settings import Settings

SCOPES = ("read", "upload", "admin")
KEY_PREFIX = "argus_"


def hash_key(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    key_id: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


def _check_scopes(scopes: list[str] | tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    bad = set(scopes) - set(SCOPES)
    if bad or not scopes:
        raise ValueError(f"invalid scope(s) {sorted(bad) or '(none)'}; choose from {', '.join(SCOPES)}")
    return frozenset(scopes)


def parse_hash_entry(entry: str) -> tuple[str, Principal]:
    """``sha256:<hex>:<scope>[,<scope>]`` (settings.security.api_key_hashes) -> (hash, principal)."""
    algo, hexdigest, scopes = (entry.split(":", 2) + ["", ""])[:3]
    if algo != "sha256" or len(hexdigest) != 64:
        raise ValueError("api_key_hashes entries look like sha256:<64 hex>:<scope>[,<scope>]")
    return f"sha256:{hexdigest.lower()}", Principal(f"cfg-{hexdigest[:8]}", _check_scopes(scopes.split(",")))


class KeyStore:
    """Authenticates a presented token: settings first, then the ``api_keys`` table (cached briefly)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._static: dict[str, Principal] = {}
        for k in settings.api_keys:  # development keys in plain text: hashed here, plain text not kept
            h = hash_key(k)
            self._static[h] = Principal(f"dev-{h[7:15]}", frozenset(SCOPES))
        for entry in settings.security.api_key_hashes:
            h, p = parse_hash_entry(entry)
            self._static[h] = p
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def authenticate(self, token: str | None) -> Principal | None:
        if not token or len(token) > 200:
            return None
        h = hash_key(token)  # comparing digests of 256-bit tokens: timing reveals nothing usable
        if (p := self._static.get(h)) is not None:
            return p
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(h)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = self._lookup(h) if token.startswith(KEY_PREFIX) else None
        with self._lock:
            if len(self._cache) > 10000:  # bounded: a flood of random keys cannot grow it without limit
                self._cache.clear()
            self._cache[h] = (now + self.settings.security.key_cache_s, principal)
        return principal

    def _lookup(self, key_hash: str) -> Principal | None:
        with db.connect(self.settings) as conn:
            row = conn.execute(
                "SELECT key_id, scopes FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL", (key_hash,)
            ).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE api_keys SET last_used_at = now() WHERE key_id = %s", (row["key_id"],))
        return Principal(row["key_id"], frozenset(row["scopes"]))


def create_key(settings: Settings, scopes: list[str], name: str | None = None) -> tuple[str, str]:
    """Create a key; returns (key id, token). The token is not stored anywhere: show it once."""
    scope_set = _check_scopes(scopes)
    key_id = secrets.token_hex(6)
    token = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    with db.transaction(settings) as conn:
        conn.execute("INSERT INTO api_keys (key_id, key_hash, scopes, name) VALUES (%s, %s, %s, %s)",
                     (key_id, hash_key(token), sorted(scope_set), name))
    return key_id, token


def revoke_key(settings: Settings, key_id: str) -> bool:
    with db.transaction(settings) as conn:
        cur = conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL",
                           (key_id,))
        return cur.rowcount == 1


def list_keys(settings: Settings) -> list[dict[str, object]]:
    with db.connect(settings) as conn:
        rows = conn.execute("SELECT key_id, name, scopes, created_at, last_used_at, revoked_at FROM api_keys "
                            "ORDER BY created_at").fetchall()
    return [dict(r) for r in rows]
