"""References to files that are not (yet) on this machine, resolved to a local path in one place.

    hf://OWNER/REPO/PATH[@REVISION]     a file of a Hugging Face Hub repository, through
                                        huggingface_hub's cache (hf://datasets/OWNER/REPO/...: a
                                        dataset repository; hf://OWNER/REPO@REVISION/PATH also reads)
    zoo:NAME                            a known public checkpoint (mocohd_cli/workflows/zoo.py)
    example:NAME                        an example shipped in the package: its backbone where a
                                        checkpoint is asked for, its trained motion model where a
                                        motion model is (`resolve(value, kind="motion")`)

`resolve(value)` turns any of them into a local path and leaves every other value as it is. A scheme
may name another file for a kind of input (`kinds=`): `resolve(value, kind="motion")` picks it, and
`as_kind(path, "motion")` maps a local path the scheme made (an example backbone) to it. hf:// is
handled here; the other schemes are registered by the layer that knows them (`register_scheme`);
mocohd_cli/__init__.py imports that layer, so every entry point of the package knows them.
Nothing is resolved (or downloaded) at import time.

Hub downloads honour the usual settings, read when a file is resolved: HF_ENDPOINT, HF_HUB_CACHE /
HF_HOME, HF_HUB_OFFLINE (and MOCOHD_OFFLINE) and the token (HF_TOKEN or `hf auth login`'s file).
No message ever shows a token.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

from .download import OFFLINE_ENVS, offline
from .errors import MocohdError
from .version import __version__

HF_SCHEME = "hf"
REPO_TYPES = {"datasets": "dataset", "spaces": "space"}  # hf://datasets/OWNER/REPO/... (models need no prefix)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# A revision: "/"-separated parts of these characters (branches, tags, commits, refs/pr/N). Checked
# here as well as by huggingface_hub: a revision goes into the URL path and the cache's folder names.
_REVISION_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$")
HF_FORMAT = "hf://OWNER/REPO/PATH[@REVISION]"
LOGIN_FIX = "log in with `hf auth login`, or set HF_TOKEN"

T = TypeVar("T")


@dataclass(frozen=True)
class Scheme:
    name: str
    resolve: Callable[[str], Path]  # the part after "NAME:" -> a local path
    reference_for: Callable[[Path], str | None] | None  # a local path this scheme made -> its reference
    help: str
    check: Callable[[str], object] | None = None  # raises MocohdError if REST names nothing (no download)
    kinds: dict[str, Callable[[str], Path]] = field(default_factory=dict)  # "motion": REST -> that kind's file


_SCHEMES: dict[str, Scheme] = {}


def register_scheme(name: str, resolve: Callable[[str], Path], *,
                    reference_for: Callable[[Path], str | None] | None = None, help: str = "",
                    check: Callable[[str], object] | None = None,
                    kinds: dict[str, Callable[[str], Path]] | None = None) -> None:
    """Make `NAME:REST` a reference that `resolve(REST)` turns into a local path; `check(REST)`
    raises MocohdError when REST is malformed or names nothing the scheme knows, without fetching;
    `kinds["motion"](REST)`: the file it names where a motion model is asked for."""
    if len(name) < 2:  # one letter would shadow Windows drive letters
        raise ValueError(f"scheme names need at least two characters, got {name!r}")
    _SCHEMES[name] = Scheme(name, resolve, reference_for, help, check, dict(kinds or {}))


def schemes() -> dict[str, Scheme]:
    return dict(_SCHEMES)


def split_reference(value: object) -> tuple[str, str] | None:
    """("hf", "//owner/repo/file") for a reference of a registered scheme, else None."""
    if not isinstance(value, (str, os.PathLike)):
        return None
    text = os.fspath(value)
    scheme, sep, rest = text.partition(":")
    if sep and scheme in _SCHEMES:
        return scheme, rest
    return None


def is_reference(value: object) -> bool:
    return split_reference(value) is not None


def check_reference(value: str, option: str) -> str:
    """`value` if it is a well-formed reference to something its scheme knows (nothing is fetched),
    else one MocohdError naming `option`."""
    parts = split_reference(value)
    if parts is None:
        raise MocohdError(f"{option} {str(value)[:200]!r} is not a reference",
                          fix="write one of: " + "; ".join(s.help or f"{s.name}:..." for s in _SCHEMES.values()))
    scheme, rest = parts
    if _SCHEMES[scheme].check is not None:
        _SCHEMES[scheme].check(rest)
    return os.fspath(value)


def resolve(value: T, kind: str | None = None) -> T:
    """A reference -> the local path it names (a str for a str, a Path for a Path); anything else,
    None included, is returned unchanged. kind ("motion"): where the scheme names another file for
    that kind of input (example:faces -> the shipped motion model), that file."""
    parts = split_reference(value)
    if parts is None:
        return value
    scheme, rest = parts
    found = _SCHEMES[scheme]
    path = found.kinds[kind](rest) if kind in found.kinds else found.resolve(rest)
    return path if isinstance(value, Path) else str(path)  # type: ignore[return-value]


def as_kind(value: T, kind: str) -> T:
    """`resolve(value, kind)`, and also for a local path that a scheme with such a kind made (the file
    `example:faces` resolved to before it was known to be a motion model): that kind's file."""
    if value is None:
        return value
    if is_reference(value):
        return resolve(value, kind)
    for scheme in _SCHEMES.values():
        if kind in scheme.kinds and scheme.reference_for is not None:
            found = scheme.reference_for(Path(os.fspath(value)))
            if found:
                path = scheme.kinds[kind](found.partition(":")[2])
                return path if isinstance(value, Path) else str(path)  # type: ignore[return-value]
    return value


def portable_reference(path: str | Path | None) -> str | None:
    """The reference another machine can resolve to the same file as this local `path` (a file in
    the Hub cache, the zoo cache or the package's examples), or None."""
    if path is None:
        return None
    if is_reference(path):
        return os.fspath(path)
    for scheme in _SCHEMES.values():
        if scheme.reference_for is not None:
            found = scheme.reference_for(Path(path))
            if found:
                return found
    return None


def recorded_reference(path: str | Path | None) -> str | None:
    """What a file written by mocohd records of a checkpoint it used: the portable reference when there
    is one (`example:faces`, `zoo:...`, `hf://...`: any machine finds it), else the absolute path."""
    if path is None:
        return None
    return portable_reference(path) or str(Path(path).resolve())


# -- hf:// ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HubFile:
    repo_id: str
    filename: str
    revision: str | None = None
    repo_type: str = "model"

    @property
    def reference(self) -> str:
        prefix = {v: k for k, v in REPO_TYPES.items()}.get(self.repo_type)
        text = f"hf://{prefix + '/' if prefix else ''}{self.repo_id}/{self.filename}"
        return text + (f"@{self.revision}" if self.revision else "")


def parse_hf(value: str) -> HubFile:
    """`hf://OWNER/REPO/PATH[@REVISION]` (or OWNER/REPO@REVISION/PATH) -> HubFile. A Path of it
    ("hf:/OWNER/..." once pathlib has folded the slashes) reads the same."""
    text = os.fspath(value)
    if not text.startswith(f"{HF_SCHEME}:/"):
        raise _malformed(text, "it does not start with hf://")
    rest = text[len(HF_SCHEME) + 1:].lstrip("/")
    parts = rest.split("/")
    repo_type = "model"
    if parts and parts[0] in REPO_TYPES:
        repo_type = REPO_TYPES[parts.pop(0)]
    if len(parts) < 3:
        raise _malformed(text, "it names no file inside the repository")
    owner, repo, path_parts = parts[0], parts[1], parts[2:]
    revision, path = None, "/".join(path_parts)
    if "@" in repo:
        repo, revision = repo.split("@", 1)
        if "@" in path:
            raise _malformed(text, "it gives two revisions")
    elif "@" in path:  # everything after the last "@" is the revision (refs/pr/1 has slashes)
        path, revision = path.rsplit("@", 1)
    path_parts = path.split("/")
    for what, name in (("owner", owner), ("repository", repo)):
        if not _NAME.match(name):
            raise _malformed(text, f"{name!r} is not a valid {what} name")
    if any(part in ("", ".", "..") for part in path_parts):
        raise _malformed(text, "its file path has an empty, '.' or '..' part")
    if revision is not None and not revision:
        raise _malformed(text, "nothing follows '@'")
    if revision is not None and (".." in revision
                                 or not all(_REVISION_PART.match(part) for part in revision.split("/"))):
        raise _malformed(text, f"revision {revision[:60]!r} is not a branch, tag or commit (letters, digits, "
                               "'.', '_', '-', '+', single '/' between parts; no '..')")
    return HubFile(f"{owner}/{repo}", "/".join(path_parts), revision, repo_type)


def _malformed(text: str, why: str) -> MocohdError:
    return MocohdError(f"malformed Hub reference {text!r}: {why}",
                       fix=f"write {HF_FORMAT}, e.g. hf://my-org/my-motion/motion.safetensors@main")


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloads, read from the environment now (huggingface_hub reads
    it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_endpoint() -> str | None:
    """HF_ENDPOINT as it is set now (None: huggingface_hub's default)."""
    return (os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None


def hub_download(file: HubFile) -> Path:
    """The local path of a Hub file: from the cache, else downloaded into it."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                        LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    ref, where = file.reference, f"{file.repo_id} at {file.revision or 'main'}"
    try:
        return Path(hf_hub_download(file.repo_id, file.filename, revision=file.revision, repo_type=file.repo_type,
                                    cache_dir=hub_cache_dir(), endpoint=hub_endpoint(), local_files_only=offline(),
                                    library_name="mocohd", library_version=__version__))
    except LocalEntryNotFoundError as exc:
        if offline():
            raise MocohdError(f"{ref} is not in the Hugging Face cache ({hub_cache_dir()}) and downloads are off "
                              f"({' / '.join(OFFLINE_ENVS)} is set)",
                              fix="resolve it once online (e.g. `mocohd zoo get` or any command given this "
                                  "reference), or unset the variable") from exc
        if isinstance(exc.__cause__, HfHubHTTPError):  # the Hub answered (403, 5xx): huggingface_hub tried the cache
            raise hub_http_error(exc.__cause__, ref, f"read {file.repo_id}") from exc
        raise MocohdError(f"could not reach the Hub ({hub_endpoint() or 'huggingface.co'}) for {ref}, and it is not "
                          "in the cache", fix="check the network (and HF_ENDPOINT if set), then try again") from exc
    except GatedRepoError as exc:
        raise MocohdError(f"{file.repo_id} is a gated repository: {ref} needs its conditions accepted",
                          fix=f"accept them on the repository's page, then {LOGIN_FIX}") from exc
    except RepositoryNotFoundError as exc:
        raise MocohdError(f"repository {file.repo_id} not found, or it is private and no valid token was sent "
                          f"(for {ref})", fix=f"check OWNER/REPO; for a private repository {LOGIN_FIX}") from exc
    except RevisionNotFoundError as exc:
        raise MocohdError(f"revision {file.revision!r} not found in {file.repo_id} (for {ref})",
                          fix="check the branch, tag or commit after '@'") from exc
    except EntryNotFoundError as exc:
        raise MocohdError(f"no file {file.filename!r} in {where} (for {ref})",
                          fix="check the path inside the repository (the Hub's 'Files' tab lists them)") from exc
    except HfHubHTTPError as exc:
        raise hub_http_error(exc, ref, f"read {file.repo_id}") from exc
    except (OSError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MocohdError(f"could not download {ref} ({reason})", fix="check the reference and the network") from exc


def hub_http_error(exc: Exception, what: str, access: str) -> MocohdError:
    """An HTTP error of the Hub about `what` as one message; `access`: what the token must allow."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return MocohdError(f"the Hub refused {what} (HTTP {status}): not authorised",
                           fix=f"{LOGIN_FIX} with a token that can {access}")
    return MocohdError(f"the Hub answered HTTP {status} for {what}", fix="try again later")


def _hub_reference_for(path: Path) -> str | None:
    """A file in the Hub cache (a snapshot entry, or the blob it links to) -> hf://OWNER/REPO/PATH@COMMIT."""
    cache = Path(os.path.abspath(hub_cache_dir()))
    path = Path(os.path.abspath(path))  # no symlinks followed: snapshot entries are symlinks to blobs
    try:
        parts = path.relative_to(cache).parts
    except ValueError:
        return None
    if len(parts) < 3:
        return None
    kind, _, name = parts[0].partition("--")
    repo_type = {"models": "model", "datasets": "dataset", "spaces": "space"}.get(kind)
    if repo_type is None or "--" not in name:
        return None
    repo_id = name.replace("--", "/", 1)
    if parts[1] == "snapshots" and len(parts) >= 4 and _COMMIT.match(parts[2]):
        return HubFile(repo_id, "/".join(parts[3:]), parts[2], repo_type).reference
    if parts[1] == "blobs":  # a resolved path: find the snapshot entry that links to it
        blob = os.path.realpath(path)
        for entry in sorted((cache / parts[0] / "snapshots").glob("*/**/*"), key=lambda p: str(p)):
            if entry.is_symlink() and os.path.realpath(entry) == blob:
                snapshot = entry.relative_to(cache / parts[0] / "snapshots").parts
                return HubFile(repo_id, "/".join(snapshot[1:]), snapshot[0], repo_type).reference
    return None


register_scheme(HF_SCHEME, lambda rest: hub_download(parse_hf(f"{HF_SCHEME}:{rest}")),
                reference_for=_hub_reference_for, help=f"{HF_FORMAT}: a file on the Hugging Face Hub",
                check=lambda rest: parse_hf(f"{HF_SCHEME}:{rest}"))
