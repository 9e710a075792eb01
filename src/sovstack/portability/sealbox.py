"""Credentials sealed under a passphrase: scrypt (RFC 7914) for the key, AES-256-GCM for the data.

Both from ``cryptography``. The file is JSON Lines: a header with the KDF parameters and salt, then
frames of at most ``FRAME`` records, each one AES-GCM message with its own random 96-bit nonce and,
as associated data, its number and whether it is the last — so frames cannot be dropped, reordered
or cut off without the open failing (the STREAM construction's idea). A frame's plaintext is JSON
Lines of ``{"table", "key", "column", "value"}``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from sovstack.core.errors import BadInput

FORMAT = "sovstack-sealed-secrets/1"
SCRYPT = {"n": 2**15, "r": 8, "p": 1}
FRAME = 1000


def _key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> AESGCM:
    return AESGCM(Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode()))


def _aad(number: int, last: bool) -> bytes:
    return f"{FORMAT} frame {number} {'last' if last else 'more'}".encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Sealer:
    """Writes the sealed file a frame at a time as records are added: never more than a frame in memory."""

    def __init__(self, passphrase: str, write: Callable[[bytes], None]) -> None:
        salt = os.urandom(16)
        self.write = write
        self.aead = _key(passphrase, salt, **SCRYPT)
        self.batch: list[bytes] = []
        self.number = 0
        self.count = 0
        write(orjson.dumps({"format": FORMAT, "cipher": "AES-256-GCM",
                            "kdf": {"name": "scrypt", **SCRYPT, "length": 32, "salt": _b64(salt)}}) + b"\n")

    def add(self, record: dict[str, Any]) -> None:
        if len(self.batch) == FRAME:
            self._frame(last=False)
        self.batch.append(orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n")
        self.count += 1

    def _frame(self, last: bool) -> None:
        nonce = os.urandom(12)
        data = self.aead.encrypt(nonce, b"".join(self.batch), _aad(self.number, last))
        self.write(orjson.dumps({"nonce": _b64(nonce), "data": _b64(data)}) + b"\n")
        self.batch, self.number = [], self.number + 1

    def close(self) -> None:
        """Write the last frame (empty when there was nothing to seal)."""
        self._frame(last=True)


def open_sealed(passphrase: str, lines: Iterable[bytes], name: str) -> Iterator[dict[str, Any]]:
    """The records of a sealed file; BadInput when the passphrase is wrong or the file was cut."""
    it = iter(lines)
    try:
        header = orjson.loads(next(it))
        kdf = header["kdf"]
        if header.get("format") != FORMAT or kdf.get("name") != "scrypt":
            raise BadInput(f"{name}: sealed in a format this sovstack does not read ({header.get('format')})")
        aead = _key(passphrase, base64.b64decode(kdf["salt"]), int(kdf["n"]), int(kdf["r"]), int(kdf["p"]))
        pending = next(it, None)
        number = 0
        while pending is not None:
            following = next(it, None)
            frame = orjson.loads(pending)
            try:
                plain = aead.decrypt(base64.b64decode(frame["nonce"]), base64.b64decode(frame["data"]),
                                     _aad(number, following is None))
            except InvalidTag as exc:
                raise BadInput("wrong passphrase: the sealed credentials do not open with it "
                               "(SOVSTACK_EXPORT_PASSPHRASE)", field="passphrase") from exc
            for line in plain.splitlines():
                yield orjson.loads(line)
            pending, number = following, number + 1
        if number == 0:
            raise BadInput(f"{name}: no frames (cut off)")
    except (StopIteration, KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
        raise BadInput(f"{name}: not a sealed credentials file ({exc})") from exc
