"""BagIt (RFC 8493) bags: written as a folder (then tarred if asked), read from a folder or a tar.

A bag is refused unless it is whole: the four tag files, every tag file's checksum, every payload
file listed in the manifest and no other, every listed one present. Payload checksums are checked
as the files are read (``Bag.open_verified``), so nothing is read twice.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from sovstack.core.errors import BadDocument

BAGIT_TXT = "bagit.txt"
BAG_INFO = "bag-info.txt"
MANIFEST = "manifest-sha256.txt"
TAGMANIFEST = "tagmanifest-sha256.txt"
TAG_FILES = (BAGIT_TXT, BAG_INFO, MANIFEST)
CHUNK = 1 << 20


class HashingWriter:
    """A file being written whose SHA-256 and size are counted on the way."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fh: IO[bytes] = path.open("wb")
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.sha.update(data)
        self.size += len(data)

    def close(self) -> str:
        self.fh.close()
        return self.sha.hexdigest()


@dataclass
class BagWriter:
    """A bag being written in ``root``: payload files are recorded with their checksums as they close."""

    root: Path
    payload: dict[str, tuple[str, int]] = field(default_factory=dict)  # "data/…" → (sha256, size)

    def writer(self, relative: str) -> HashingWriter:
        return HashingWriter(self.root / "data" / relative)

    def add(self, relative: str, w: HashingWriter) -> None:
        self.payload[f"data/{relative}"] = (w.close(), w.size)

    def write_bytes(self, relative: str, data: bytes) -> None:
        w = self.writer(relative)
        w.write(data)
        self.add(relative, w)

    def copy_in(self, relative: str, source: Path) -> tuple[str, int]:
        """Copy ``source`` into the payload, hashing on the way; its (sha256, size)."""
        w = self.writer(relative)
        with source.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                w.write(chunk)
        self.add(relative, w)
        return self.payload[f"data/{relative}"]

    def oxum(self) -> str:
        return f"{sum(size for _sha, size in self.payload.values())}.{len(self.payload)}"

    def finish(self, info: list[tuple[str, str]]) -> None:
        """Write bagit.txt, bag-info.txt (``info`` plus Payload-Oxum) and both manifests."""
        tags = {BAGIT_TXT: b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
                BAG_INFO: "".join(f"{k}: {v}\n" for k, v in [*info, ("Payload-Oxum", self.oxum())]).encode(),
                MANIFEST: "".join(f"{sha}  {path}\n" for path, (sha, _n) in sorted(self.payload.items())).encode()}
        lines = []
        for name, body in tags.items():
            (self.root / name).write_bytes(body)
            lines.append(f"{hashlib.sha256(body).hexdigest()}  {name}\n")
        (self.root / TAGMANIFEST).write_text("".join(lines))


def write_tar(folder: Path, out: Path) -> None:
    """``folder`` as an uncompressed tar at ``out``, every member under the folder's name."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(folder, arcname=folder.name)


# Reading ------------------------------------------------------------------------------------------

class _Source:
    """The files of a bag, by their path inside it; each opened for reading."""

    files: dict[str, int]  # path → size

    def open(self, name: str) -> BinaryIO:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _Folder(_Source):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = {}
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames]:
                path = Path(dirpath) / name
                if path.is_symlink():
                    raise BadDocument(str(path.relative_to(root)), "a symbolic link is not allowed in a bag")
            for name in filenames:
                path = Path(dirpath) / name
                self.files[path.relative_to(root).as_posix()] = path.stat().st_size

    def open(self, name: str) -> BinaryIO:
        return (self.root / name).open("rb")


class _Tar(_Source):
    def __init__(self, path: Path) -> None:
        try:
            self.tar = tarfile.open(path, "r:*")
            members = self.tar.getmembers()
        except (tarfile.TarError, EOFError) as exc:
            raise BadDocument(str(path), f"not a readable tar file ({exc})") from exc
        tops = {PurePosixPath(m.name).parts[0] for m in members if m.name not in ("", ".")}
        if len(tops) != 1:
            raise BadDocument(str(path), "a bag in a tar file must be one top folder")
        top = tops.pop()
        self.members: dict[str, tarfile.TarInfo] = {}
        self.files = {}
        for m in members:
            parts = PurePosixPath(m.name).parts
            if m.name.startswith("/") or ".." in parts:
                raise BadDocument(m.name, "a member outside the bag is not allowed")
            if m.isdir():
                continue
            if not m.isfile():
                raise BadDocument(m.name, "only files and folders are allowed in a bag")
            name = "/".join(parts[1:])
            self.members[name] = m
            self.files[name] = m.size
        self.top = top

    def open(self, name: str) -> BinaryIO:
        fh = self.tar.extractfile(self.members[name])
        assert fh is not None
        return fh  # type: ignore[return-value]

    def close(self) -> None:
        self.tar.close()


def _manifest(text: str, name: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        sha, _sep, path = line.strip().partition(" ")
        path = path.strip().replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")
        if len(sha) != 64 or not path or path in entries:
            raise BadDocument(name, f"line {number} is not `SHA-256  path` (or names a file twice)")
        entries[path] = sha.lower()
    return entries


def _info(text: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and pairs:  # a continuation line
            pairs[-1] = (pairs[-1][0], f"{pairs[-1][1]} {line.strip()}")
        elif ":" in line:
            key, _sep, value = line.partition(":")
            pairs.append((key.strip(), value.strip()))
    return pairs


class Bag:
    """An opened bag whose structure and tag files were checked; payload files are checked on reading."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise BadDocument(str(path), "no such file or folder")
        self.path = path
        self.source: _Source = _Folder(path) if path.is_dir() else _Tar(path)
        try:
            self._check_structure()
        except BaseException:
            self.source.close()
            raise

    def close(self) -> None:
        self.source.close()

    def _text(self, name: str) -> str:
        if name not in self.source.files:
            raise BadDocument(name, "missing from the bag")
        with self.source.open(name) as fh:
            data = fh.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadDocument(name, "not UTF-8 text") from exc

    def _check_structure(self) -> None:
        declaration = dict(_info(self._text(BAGIT_TXT)))
        if declaration.get("BagIt-Version") not in ("0.97", "1.0") or \
                declaration.get("Tag-File-Character-Encoding", "").upper() != "UTF-8":
            raise BadDocument(BAGIT_TXT, "not a BagIt 1.0 (or 0.97) declaration in UTF-8")
        tags = _manifest(self._text(TAGMANIFEST), TAGMANIFEST)
        for name in TAG_FILES:
            if name not in tags:
                raise BadDocument(TAGMANIFEST, f"does not list {name}")
        for name, sha in sorted(tags.items()):
            if name not in self.source.files:
                raise BadDocument(name, "missing from the bag (listed in the tag manifest)")
            if self._sha(name) != sha:
                raise BadDocument(name, "altered: its SHA-256 is not the one in the tag manifest")
        for name in sorted(self.source.files):
            if not name.startswith("data/") and name != TAGMANIFEST and name not in tags:
                raise BadDocument(name, "an extra file the tag manifest does not list")
        self.info = _info(self._text(BAG_INFO))
        self.manifest = _manifest(self._text(MANIFEST), MANIFEST)
        for name in sorted(self.manifest):
            if name not in self.source.files:
                raise BadDocument(name, "missing from the bag (listed in the manifest)")
        for name in sorted(self.source.files):
            if name.startswith("data/") and name not in self.manifest:
                raise BadDocument(name, "an extra file the manifest does not list")

    def _sha(self, name: str) -> str:
        sha = hashlib.sha256()
        with self.source.open(name) as fh:
            while chunk := fh.read(CHUNK):
                sha.update(chunk)
        return sha.hexdigest()

    def value(self, label: str) -> str | None:
        """The first value of a bag-info label."""
        return next((v for k, v in self.info if k.lower() == label.lower()), None)

    def values(self, label: str) -> list[str]:
        return [v for k, v in self.info if k.lower() == label.lower()]

    def check_oxum(self) -> None:
        """Payload-Oxum (octets.files) against the payload; call after the checksums (they name the file)."""
        oxum = self.value("Payload-Oxum")
        actual = f"{sum(self.source.files[n] for n in self.manifest)}.{len(self.manifest)}"
        if oxum != actual:
            raise BadDocument(BAG_INFO, f"Payload-Oxum says {oxum} but the payload is {actual}")

    def has(self, relative: str) -> bool:
        return f"data/{relative}" in self.manifest

    def payload(self, under: str) -> list[str]:
        """The payload files under a folder of data/, by their path relative to that folder, sorted."""
        prefix = f"data/{under.rstrip('/')}/"
        return sorted(n[len(prefix):] for n in self.manifest if n.startswith(prefix))

    def size(self, relative: str) -> int:
        return self.source.files[f"data/{relative}"]

    def verify(self, relative: str) -> None:
        """Read a payload file through, checking its checksum."""
        with self.open_verified(relative) as fh:
            while fh.read(CHUNK):
                pass

    @contextmanager
    def open_verified(self, relative: str) -> Iterator[_Verified]:
        """A payload file to read once to its end; BadDocument naming it when its checksum differs."""
        name = f"data/{relative}"
        if name not in self.manifest:
            raise BadDocument(name, "missing from the bag")
        with self.source.open(name) as raw:
            reader = _Verified(raw)
            yield reader
            reader.drain()
            if reader.sha.hexdigest() != self.manifest[name]:
                raise BadDocument(name, "altered or truncated: its SHA-256 is not the one in the manifest")

    def copy_verified(self, relative: str, target: Path) -> int:
        """Copy a payload file to ``target`` (a new file), checking its checksum; its size."""
        with self.open_verified(relative) as fh, target.open("wb") as out:
            while chunk := fh.read(CHUNK):
                out.write(chunk)
        return self.size(relative)


class _Verified:
    """A file read through a running SHA-256."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        """Lines, as a file gives them."""
        buffered = _lines(self)
        return buffered

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def _lines(reader: _Verified) -> Iterator[bytes]:
    rest = b""
    while chunk := reader.read(CHUNK):
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from (p + b"\n" for p in parts)
    if rest:
        yield rest


def remove(path: Path) -> None:
    """Remove a partial output (folder or file) if it is there."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
