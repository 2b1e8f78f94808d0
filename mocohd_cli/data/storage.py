"""Where a dataset's files live: a folder, or a .zip file read in place.

A storage lists its files (relative POSIX names, hidden files left out), reads one as bytes,
opens one as a seekable file object (a zip member stored without compression is read straight
from the archive, never copied), and gives each file a key that changes when the file does
(size and modification time in a folder; size and CRC in a zip), for the index cache.
"""
from __future__ import annotations

import io
import os
import re
import struct
import zipfile
from pathlib import Path, PurePosixPath

from ..infra.errors import MocohdError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
# A compressed zip member is inflated into memory (a stored one is read in place): beyond this it
# is a zip bomb or a video that should have been stored.
MAX_COMPRESSED_MEMBER = 256 << 20
VIDEO_SUFFIXES = {".mp4", ".avi", ".webm", ".gif", ".mov", ".mkv", ".m4v"}


def natural_key(name: str) -> list:
    """Sort key that puts img_2 before img_10. Digit runs compare as numbers by (length without
    leading zeros, digits): no int() of a name's 5000-digit run, which Python refuses."""
    return [(len(part.lstrip("0")), part.lstrip("0")) if part.isdigit() else part.lower()
            for part in re.split(r"(\d+)", name)]


class _FolderStorage:
    kind = "folder"

    def __init__(self, root: Path):
        self.root = root

    def files(self) -> list[str]:
        return [p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(self.root).parts)]

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def open(self, name: str):
        """The file as something PyAV and imageio can read: here its path."""
        return str(self.root / name)

    def key(self, name: str) -> list:
        stat = (self.root / name).stat()
        return [stat.st_size, stat.st_mtime_ns]

    def signature(self) -> None:
        """A folder has no signature of its own: each file is checked by its key."""
        return None


class _MemberFile(io.RawIOBase):
    """A zip member stored without compression, read in place from the archive: seekable, no copy."""

    def __init__(self, path: Path, offset: int, size: int):
        super().__init__()
        self._file = open(path, "rb")
        self._offset, self._size, self._pos = offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        if n == 0:
            return 0
        self._file.seek(self._offset + self._pos)
        got = self._file.readinto(memoryview(buffer)[:n])
        self._pos += got
        return got

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class _ZipStorage:
    kind = "zip"

    def __init__(self, root: Path):
        self.root = root
        self._handle: zipfile.ZipFile | None = None
        self._pid = -1
        try:
            with zipfile.ZipFile(root) as archive:
                self._infos = {info.filename: info for info in archive.infolist() if not info.is_dir()}
        except (zipfile.BadZipFile, OSError) as exc:
            raise MocohdError(f"not a readable zip file ({exc})", path=root,
                              fix="re-create the archive, or unpack it and pass the folder to --data") from exc
        self._offsets: dict[str, int] = {}

    def __getstate__(self):  # open handles do not cross into worker processes
        state = dict(self.__dict__)
        state.update(_handle=None, _pid=-1)
        return state

    def _archive(self) -> zipfile.ZipFile:
        if self._handle is None or self._pid != os.getpid():
            self._handle, self._pid = zipfile.ZipFile(self.root), os.getpid()
        return self._handle

    def files(self) -> list[str]:
        return [n for n in self._infos
                if not any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(n).parts)]

    def read(self, name: str) -> bytes:
        info = self._infos[name]
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_COMPRESSED_MEMBER:
            # zipfile stops at the declared size, so this bounds what a zip bomb can expand to
            raise MocohdError(f"zip member {name[:100]!r} expands to {info.file_size / 2**20:,.0f} MiB "
                              f"(compressed members are read into memory; the limit is "
                              f"{MAX_COMPRESSED_MEMBER >> 20} MiB)", path=self.root,
                              fix="store large videos uncompressed in the zip (zip -0), or unpack it and pass the folder")
        return self._archive().read(name)

    def _data_offset(self, info: zipfile.ZipInfo) -> int:
        """Where a member's bytes start: after its local header (whose name and extra field lengths
        may differ from the central directory's)."""
        if info.filename not in self._offsets:
            with open(self.root, "rb") as handle:
                handle.seek(info.header_offset)
                header = handle.read(30)
            if len(header) < 30 or header[:4] != b"PK\x03\x04":
                raise ValueError("bad zip member header")
            name_length, extra_length = struct.unpack("<HH", header[26:30])
            self._offsets[info.filename] = info.header_offset + 30 + name_length + extra_length
        return self._offsets[info.filename]

    def open(self, name: str):
        """The member as a seekable file object: read in place if stored, else from memory."""
        info = self._infos[name]
        if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
            return _MemberFile(self.root, self._data_offset(info), info.file_size)
        return io.BytesIO(self.read(name))

    def key(self, name: str) -> list:
        info = self._infos[name]
        return [info.file_size, info.CRC]

    def signature(self) -> list:
        stat = self.root.stat()
        return [stat.st_size, stat.st_mtime_ns]


def open_storage(root: Path, *, given_as: str = "--data"):
    """The storage of a dataset folder or .zip. given_as: where the user gave it, for the errors' fix
    (`mocohd data inspect` takes it as an argument, not as --data)."""
    root = Path(root)
    if not root.exists():
        raise MocohdError("dataset not found", path=root, fix=f"check the path given to {given_as}")
    if root.is_dir():
        return _FolderStorage(root)
    if root.suffix.lower() == ".zip":
        return _ZipStorage(root)
    one_video = (" (for one video file, pass the folder that holds it)"
                 if root.suffix.lower() in VIDEO_SUFFIXES else "")
    raise MocohdError("a dataset must be a folder or a .zip file", path=root,
                      fix=f"pass a folder of frame folders or video files (or a .zip of one) to {given_as}{one_video}")
