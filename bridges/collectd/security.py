"""collectd network security: Sign (HMAC-SHA-256) and Encrypt (AES-256-OFB), and the AuthFile.

From collectd's network plugin (network.c, collectd 4.7+ / 5.x):

- Sign, part type 0x0200: `[type][length][32-byte HMAC][user name]`, the HMAC is
  HMAC-SHA-256 with the password as key over `user name || everything after this part`.
- Encrypt, part type 0x0210: `[type][length][u16 user-name length][user name][16-byte IV]
  [ciphertext]`; the key is SHA-256(password), the cipher AES-256 in OFB mode, and the
  plaintext is `SHA-1(payload) || payload`, the payload being ordinary parts.
- AuthFile: one `user: password` per line (the password runs to the end of the line, white
  space around both trimmed); lines starting with `#` and blank lines are ignored.
"""
from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:  # cryptography >= 43 keeps OFB among the "decrepit" modes (it leaves `modes` in 49)
    from cryptography.hazmat.decrepit.ciphers.modes import OFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import OFB

SIGN_HASH_LEN = 32
IV_LEN = 16
SHA1_LEN = 20


def sign_mac(username: bytes, password: bytes, payload: bytes) -> bytes:
    """The HMAC-SHA-256 of a Sign part: key = password, message = user name || payload."""
    return hmac.new(password, username + payload, hashlib.sha256).digest()


def verify_signature(mac: bytes, username: bytes, password: bytes, payload: bytes) -> bool:
    """True if `mac` is the right signature (compared in constant time)."""
    return hmac.compare_digest(mac, sign_mac(username, password, payload))


def _aes_ofb(password: bytes, iv: bytes):
    key = hashlib.sha256(password).digest()
    return Cipher(algorithms.AES(key), OFB(iv))


def decrypt(password: bytes, iv: bytes, ciphertext: bytes) -> bytes | None:
    """Decrypt an Encrypt part's ciphertext; the payload, or None if the SHA-1 does not match
    (wrong password or corrupted data)."""
    d = _aes_ofb(password, iv).decryptor()
    plain = d.update(ciphertext) + d.finalize()
    digest, payload = plain[:SHA1_LEN], plain[SHA1_LEN:]
    if len(digest) != SHA1_LEN or not hmac.compare_digest(digest, hashlib.sha1(payload).digest()):
        return None
    return payload


def encrypt(password: bytes, iv: bytes, payload: bytes) -> bytes:
    """The ciphertext of an Encrypt part (what collectd's client does)."""
    e = _aes_ofb(password, iv).encryptor()
    return e.update(hashlib.sha1(payload).digest() + payload) + e.finalize()


class AuthFileError(ValueError):
    """An AuthFile that cannot be read."""


def parse_authfile(text: str) -> dict[bytes, bytes]:
    """`user: password` lines -> {user: password} (bytes, as they go on the wire).  Pure."""
    users: dict[bytes, bytes] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        user = user.strip()
        if not sep or not user:
            continue  # collectd skips such lines too
        users[user.encode("utf-8")] = password.strip().encode("utf-8")
    return users


class AuthFile:
    """An AuthFile that is re-read when its modification time or size changes.

    `lookup(user)` is what the decoder calls; `refresh()` (from the daemon's tick) re-reads
    the file if it changed.  A file that disappears or becomes unreadable keeps the last good
    users (and `error` says why), so a half-written file never locks everybody out.
    """

    def __init__(self, path: str):
        self.path = path
        self.users: dict[bytes, bytes] = {}
        self.error: str | None = None
        self.reloads = 0
        self._stamp = None
        if not self.refresh():
            raise AuthFileError(f"cannot read AuthFile {path!r}: {self.error}")

    def refresh(self) -> bool:
        """Re-read the file if it changed; False if it could not be read."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self._stamp:
                return True
            with open(self.path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as e:
            self.error = e.strerror or str(e)
            return False
        self.users = parse_authfile(text)
        self._stamp = stamp
        self.error = None
        self.reloads += 1
        return True

    def lookup(self, user: bytes) -> bytes | None:
        """The password of `user`, or None."""
        return self.users.get(user)
