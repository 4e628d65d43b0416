"""Bearer tokens of the client systems allowed to post events, one token per client.

The tokens file holds only SHA-256 hashes, one client a line: `CLIENT_NAME SHA256_HEX`
(`#` starts a comment). A presented token is hashed and compared with every stored hash in
constant time, so neither the file nor the timing of a refusal reveals a token.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from connectors.live.exceptions import TokenFileError

_CLIENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HASH = re.compile(r"[0-9a-f]{64}")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenStore:
    """Client name -> SHA-256 hex of its token."""

    hashes: dict[str, str]

    @classmethod
    def load(cls, path: Path) -> TokenStore:
        try:
            text = path.read_text()
        except OSError as exc:
            raise TokenFileError(
                f"cannot read tokens file {path} ({exc.strerror}): create one with "
                "`broker connect token --tokens FILE CLIENT`"
            ) from None
        hashes: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2 or not _CLIENT.fullmatch(parts[0]):
                raise TokenFileError(
                    f"{path}:{number}: expected `CLIENT_NAME SHA256_HEX`; fix the line"
                )
            client, digest = parts[0], parts[1].lower()
            if not _HASH.fullmatch(digest):
                raise TokenFileError(
                    f"{path}:{number}: the hash of client {client} is not 64 hex digits "
                    "(store the SHA-256 of the token, never the token)"
                )
            if client in hashes:
                raise TokenFileError(f"{path}:{number}: client {client} is listed twice")
            hashes[client] = digest
        if not hashes:
            raise TokenFileError(
                f"{path} holds no client tokens: add one with "
                "`broker connect token --tokens FILE CLIENT`"
            )
        return cls(hashes)

    def client_for(self, token: str | None) -> str | None:
        """The client a bearer token belongs to, or None; checks every entry in constant time."""
        if not token:
            return None
        presented = token_hash(token).encode()
        found: str | None = None
        for client, digest in self.hashes.items():
            if hmac.compare_digest(presented, digest.encode()):
                found = client
        return found


def new_token(path: Path, client: str) -> str:
    """Add a client with a fresh random token to the tokens file; return the token (once)."""
    if not _CLIENT.fullmatch(client):
        raise TokenFileError(
            "client names are letters, digits, '.', '_' or '-' (at most 64 characters)"
        )
    existing = TokenStore.load(path).hashes if path.exists() and path.stat().st_size else {}
    if client in existing:
        raise TokenFileError(
            f"client {client} already has a token in {path}: remove its line first"
        )
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(f"{client} {token_hash(token)}\n")
    return token
