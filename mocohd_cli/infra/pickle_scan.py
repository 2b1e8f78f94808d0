"""A bounded pre-scan of untrusted pickles, run before any unpickler touches them.

Refusing globals (mocohd's restricted unpickler, torch's weights-only loader) stops pickled code,
but not pickled *work*: a few kilobytes can describe a tuple that holds the previous tuple twice,
sixty times over, which is 2**60 objects once expanded; used as a dict key, hashing it never ends.
Deep nesting likewise ends in a RecursionError far from the file that caused it.

`scan_pickle` walks the opcodes with `pickletools.genops` (which parses, never builds objects) and
tracks, for every value on the pickle's stack and in its memo, how many objects it expands to
and how deeply it nests. Anything over `PickleLimits` is refused with a MocohdError before
loading. The counts saturate at the limit, so the scan itself stays linear in the file's size.
"""
from __future__ import annotations

import io
import pickletools
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .errors import MocohdError


@dataclass(frozen=True)
class PickleLimits:
    """Far above what real checkpoints need (a 1024 px StyleGAN2 network pickle has about 10**5
    opcodes, nests about 30 deep and expands to under 10**6 objects)."""

    opcodes: int = 50_000_000
    expanded_objects: int = 50_000_000  # objects counted once per reference, shared ones expanded
    depth: int = 400  # below Python's recursion limit: later traversals recurse
    container_items: int = 20_000_000


LIMITS = PickleLimits()
_MARK = object()  # a MARK on the simulated stack
_FIX = "the file is not a checkpoint mocohd can read safely; get it again from its source"


class _Bounded:
    """A read-only view of a stream that never asks for more than is left: a forged length prefix
    (BINBYTES8 of 2**60) must fail as a short read, not as a huge allocation. Reads go straight
    to the stream, so its position stays exact (torch's legacy format continues after a pickle)."""

    def __init__(self, stream: BinaryIO, size: int):
        self._stream, self._left, self._read = stream, size, 0

    def _take(self, data: bytes) -> bytes:
        self._left -= len(data)
        self._read += len(data)
        return data

    def read(self, n: int = -1) -> bytes:
        return self._take(self._stream.read(self._left if n < 0 else min(n, self._left)))

    def readline(self, limit: int = -1) -> bytes:  # pickletools reads text arguments by line
        return self._take(self._stream.readline(self._left if limit < 0 else min(limit, self._left)))

    def tell(self) -> int:
        return self._read


class UnboundedPickleError(MocohdError):
    """A pickle over the limits: refused as hostile (a malformed one is a plain MocohdError)."""


def _refuse(reason: str, path: Path | None, what: str) -> MocohdError:
    return UnboundedPickleError(f"refusing to load this {what}: {reason}", path=path, fix=_FIX)


def _malformed(reason: str, path: Path | None, what: str, kind: str) -> MocohdError:
    return MocohdError(f"cannot read this {what}: not a well-formed {kind} ({reason})", path=path,
                       fix="the file is damaged, truncated or of another format; get it again from its source")


class _Value:
    """One value of the simulated pickle machine: the objects it expands to (shared references
    counted each time) and how deeply it nests. The stack and the memo hold the same record, so
    a container filled after it was memoised is seen at its real size wherever it is fetched."""

    __slots__ = ("objects", "depth", "shared")

    def __init__(self, objects: int, depth: int):
        self.objects, self.depth, self.shared = objects, depth, False


# Opcodes that add to the container below their operands (the first entry of stack_before)
# instead of making a new value.
_MUTATORS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}
_GETS = {"GET", "BINGET", "LONG_BINGET"}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}


def scan_pickle(stream: BinaryIO, *, path: Path | None = None, what: str = "pickle",
                limits: PickleLimits = LIMITS, size: int | None = None, kind: str = "pickle") -> None:
    """Scan one pickle from the stream's position to its STOP opcode (the stream is left just
    after it, where torch's legacy format continues with the next pickle)."""
    if size is None:
        here = stream.tell()
        size = stream.seek(0, io.SEEK_END) - here
        stream.seek(here)
    reader = _Bounded(stream, size)
    stack: list = []
    memo: dict = {}
    opcodes = 0

    def pop_operands(opcode) -> tuple[list[_Value], int]:
        """The values the opcode consumes (deepest last) and how many came from above a MARK."""
        layout = opcode.stack_before
        below = len(layout)
        popped: list[_Value] = []
        if pickletools.markobject in layout:
            below = layout.index(pickletools.markobject)
            while stack and stack[-1] is not _MARK:
                popped.append(stack.pop())
            if not stack:
                raise _malformed("a MARK is missing", path, what, kind)
            stack.pop()
        marked = len(popped)
        for _ in range(below):
            if not stack or stack[-1] is _MARK:
                raise _malformed("its stack underflows", path, what, kind)
            popped.append(stack.pop())
        return popped, marked

    def check(value: _Value, items: int) -> None:
        if items > limits.container_items:
            raise _refuse(f"a container of {items:,} items", path, what)
        if value.objects > limits.expanded_objects:
            raise _refuse(f"its objects expand to more than {limits.expanded_objects:,} (shared references "
                          "nested to blow up hashing or memory)", path, what)
        if value.depth > limits.depth:
            raise _refuse(f"it nests more than {limits.depth} levels deep", path, what)

    try:
        for opcode, arg, _pos in pickletools.genops(reader):
            opcodes += 1
            if opcodes > limits.opcodes:
                raise _refuse(f"more than {limits.opcodes:,} pickle opcodes", path, what)
            name = opcode.name
            if name in _PUTS or name == "MEMOIZE":
                if not stack or stack[-1] is _MARK:
                    raise _malformed("it memoises an empty stack", path, what, kind)
                memo[arg if name in _PUTS else len(memo)] = stack[-1]
                continue
            if name in _GETS or name == "DUP":
                if name == "DUP" and (not stack or stack[-1] is _MARK):
                    raise _malformed("its stack underflows", path, what, kind)
                if name != "DUP" and arg not in memo:
                    raise _malformed(f"memo entry {arg} is used before it is defined", path, what, kind)
                value = stack[-1] if name == "DUP" else memo[arg]
                value.shared = True  # referred to twice: from now on it must not change
                stack.append(value)
                continue
            popped, marked = pop_operands(opcode)
            if name in _MUTATORS:
                container, items = popped[-1], popped[:-1]
                if container.shared:  # the pickler never does this; a stale size would hide a bomb
                    raise _refuse(f"it changes a container ({name}) after referring to it elsewhere", path, what)
                container.objects = min(container.objects + sum(v.objects for v in items),
                                        limits.expanded_objects + 1)
                container.depth = max([container.depth] + [v.depth + 1 for v in items])
                check(container, marked)
                stack.append(container)
                continue
            value = _Value(min(1 + sum(v.objects for v in popped), limits.expanded_objects + 1),
                           1 + max((v.depth for v in popped), default=0))
            check(value, marked)
            for slot in opcode.stack_after:
                stack.append(_MARK if slot is pickletools.markobject else value)
            if name == "STOP":
                return
    except MocohdError:
        raise
    except Exception as exc:  # genops raises ValueError for truncated or malformed pickles
        raise _malformed(str(exc)[:200], path, what, kind) from exc
    raise _malformed("it ends without a STOP opcode: truncated?", path, what, kind)


def scan_pickles(data: bytes | BinaryIO, count: int, **kwargs) -> BinaryIO:
    """Scan `count` consecutive pickles (torch's legacy format starts with five: magic number,
    protocol, system info, the object, the storage keys); returns the stream, positioned after them."""
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    for _ in range(count):
        scan_pickle(stream, **kwargs)
    return stream


def scan_torch_file(path: Path, *, what: str = "checkpoint", limits: PickleLimits = LIMITS) -> None:
    """Pre-scan a torch.save file: the zip format's data.pkl (members must be stored uncompressed,
    as torch writes them, so nothing in it can expand past the file's own size), or the legacy
    format's five leading pickles."""
    with open(path, "rb") as handle:
        starts_as_zip = handle.read(4) == b"PK\x03\x04"  # how torch.load tells its two formats apart
    if starts_as_zip != zipfile.is_zipfile(path):  # zipfile looks at the end: a pickle with a zip appended
        raise _refuse("it is both a pickle and a zip archive (torch would load the part this check did not "
                      "see)", path, what)
    if starts_as_zip:
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
                compressed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
                if compressed:
                    raise _refuse(f"its zip member {compressed[0][:80]!r} is compressed (torch.save stores "
                                  "members uncompressed; a compressed one can expand without bound)", path, what)
                pickles = [m for m in members if m.filename.endswith("data.pkl")]
                if len(pickles) != 1:
                    raise _refuse(f"a torch zip file has one data.pkl, this one has {len(pickles)}", path, what)
                with archive.open(pickles[0]) as member:
                    data = member.read(pickles[0].file_size)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise _malformed(f"its zip structure is damaged: {exc}", path, what, "PyTorch file") from exc
        scan_pickle(io.BytesIO(data), path=path, what=what, limits=limits, kind="PyTorch file")
        return
    with open(path, "rb") as handle:
        scan_pickles(handle, 5, path=path, what=what, limits=limits, kind="PyTorch file")
