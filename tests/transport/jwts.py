"""A decentralised-auth set-up for tests: an operator, an account with JetStream, and a user's credentials
file, signed with NKeys as `nsc` would sign them (JWT v2, ed25519-nkey)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.signing
import nkeys

_UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1}
_JETSTREAM = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _keys(prefix: int) -> Any:
    return nkeys.from_seed(bytearray(nkeys.encode_seed(bytes(nacl.signing.SigningKey.generate()), prefix)))


def _jwt(issuer: Any, subject: str, name: str, nats: dict[str, Any]) -> str:
    claims = {
        "jti": secrets.token_hex(16).upper(),
        "iat": int(time.time()),
        "iss": issuer.public_key.decode(),
        "sub": subject,
        "name": name,
        "nats": {**nats, "version": 2},
    }
    signing_input = (
        f"{_b64(json.dumps({'typ': 'JWT', 'alg': 'ed25519-nkey'}).encode())}.{_b64(json.dumps(claims).encode())}"
    )
    return f"{signing_input}.{_b64(issuer.sign(signing_input.encode()))}"


@dataclass(frozen=True)
class Decentralised:
    """The server's configuration lines, and a user's credentials file."""

    config: str
    credentials: Path
    stranger: Path
    """Credentials of a user signed by an account the server does not know."""


def _credentials(path: Path, jwt: str, user: Any) -> Path:
    path.write_text(
        f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user.seed.decode()}\n------END USER NKEY SEED------\n"
    )
    return path


def decentralised(folder: Path) -> Decentralised:
    operator, account, system = (
        _keys(nkeys.PREFIX_BYTE_OPERATOR),
        _keys(nkeys.PREFIX_BYTE_ACCOUNT),
        _keys(nkeys.PREFIX_BYTE_ACCOUNT),
    )
    operator_jwt = _jwt(operator, operator.public_key.decode(), "test operator", {"type": "operator"})
    account_id, system_id = account.public_key.decode(), system.public_key.decode()
    account_jwt = _jwt(operator, account_id, "app", {"type": "account", "limits": {**_UNLIMITED, **_JETSTREAM}})
    system_jwt = _jwt(operator, system_id, "SYS", {"type": "account", "limits": _UNLIMITED})
    user = _keys(nkeys.PREFIX_BYTE_USER)
    user_jwt = _jwt(
        account,
        user.public_key.decode(),
        "app user",
        {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1},
    )
    elsewhere, stranger = _keys(nkeys.PREFIX_BYTE_ACCOUNT), _keys(nkeys.PREFIX_BYTE_USER)
    stranger_jwt = _jwt(elsewhere, stranger.public_key.decode(), "stranger", {"type": "user", "pub": {}, "sub": {}})
    config = (
        f'operator: "{operator_jwt}"\nsystem_account: "{system_id}"\nresolver: MEMORY\n'
        f'resolver_preload: {{ {account_id}: "{account_jwt}", {system_id}: "{system_jwt}" }}\n'
    )
    return Decentralised(
        config,
        _credentials(folder / "user.creds", user_jwt, user),
        _credentials(folder / "stranger.creds", stranger_jwt, stranger),
    )
