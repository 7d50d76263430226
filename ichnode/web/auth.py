"""Password hashes for the worklist users: salted scrypt (or PBKDF2-SHA256), never plain text.

Format: scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>, or pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>.
`ichnode hash-password` prints one for the `web.users` list.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os

_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = 2 ** 14, r: int = 8, p: int = 1,
                  salt: bytes | None = None) -> str:
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when password matches the hash; False for a wrong password or a malformed hash."""
    try:
        scheme, *parts = encoded.split("$")
        if scheme == "scrypt":
            n, r, p, salt, expected = parts
            digest = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt),
                                    n=int(n), r=int(r), p=int(p), dklen=len(base64.b64decode(expected)),
                                    maxmem=128 * 1024 * 1024)
        elif scheme == "pbkdf2_sha256":
            iterations, salt, expected = parts
            digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), base64.b64decode(salt),
                                         int(iterations), dklen=len(base64.b64decode(expected)))
        else:
            return False
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, base64.b64decode(expected))


def check_login(users: dict[str, str], name: str, password: str) -> bool:
    """True for a known user with the right password. An unknown name is hashed too, so the
    answer time does not tell which names exist."""
    ok = verify_password(password, users.get(name, _DUMMY_HASH))
    return ok and name in users
