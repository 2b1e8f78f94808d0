"""The model zoo: known public checkpoints, fetched into the cache, checked and converted.

    mocohd zoo list                     the table below, with what is already in the cache
    mocohd zoo get NAME                 download, check the sha256, convert (once)
    --checkpoint zoo:NAME               wherever a checkpoint path goes (see mocohd_cli/infra/hub.py)
    --checkpoint example:faces          a backbone shipped in the package (mocohd_cli/workflows/builtin.py)
    --motion example:faces              the trained motion model shipped for it

An entry whose files have no sha256 we could verify says so; `zoo get` then refuses unless the user
gives the hash (`--sha256`) or accepts the file as it arrives (`--trust-unverified`, which records
the hash it got). Verification is never skipped silently: `zoo:NAME` of an unverified entry only
resolves once `zoo get` has fetched it. Each fetched entry lives in $MOCOHD_CACHE/zoo/NAME/: the
converted file and zoo.json (the files' hashes and how they were checked).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import datetime as _dt
import json
import os
from pathlib import Path
import shutil
import tempfile

from ..infra.download import download
from ..infra.errors import MocohdError
from ..infra.files import atomic_path, cache_dir, sha256_of
from ..infra.hub import register_scheme, resolve
from ..models.backbone import load_backbone
from .builtin import default_backbone, example_backbones, example_motion
from .convert import convert_backbone
from .released import PCA_FILES, import_released_motion

RECORD = "zoo.json"
UNVERIFIED_FIX = "pass --sha256 FILE=HEX (a hash you trust) or --trust-unverified (record whatever arrives)"
_SHA256 = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ZooFile:
    name: str  # its name in the entry's folder; a glob (modelR_epoch_*.pth) for files picked from --from
    url: str | None  # https://... or hf://...; None: no direct download (the entry's page says where)
    sha256: str | None  # None: no hash we could verify


@dataclass(frozen=True)
class ZooEntry:
    name: str
    kind: str  # "backbone" or "motion"
    description: str
    license: str
    page: str  # where it is published
    files: tuple[ZooFile, ...]
    convert: str  # what fetching it does after the download: see CONVERSIONS
    resolution: int
    backbone: str | None = None  # motion models: the zoo entry of the image generator they walk
    config: dict = field(default_factory=dict)  # BigGAN: the config.json written beside the weights
    sha256_source: str = "none: no published hash was found"

    @property
    def verified(self) -> bool:
        return all(f.sha256 for f in self.files)


CONVERSIONS = {
    "stylegan2": "mocohd convert (rosinality .pt)",
    "biggan": "mocohd convert (weights + config.json of its size)",
    "import-motion": "mocohd import-motion (modelR_epoch_N.pth, pca_comp.npy, pca_stdev.npy, its backbone)",
}


def _drive(file_id: str) -> str:
    """A direct download of a public Google Drive file (large files need confirm=t)."""
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


_RELEASE = "https://github.com/snap-research/MoCoGAN-HD#pre-trained-image-generator--video-datasets"
_RELEASE_LICENSE = "not stated by the release: check before use"
_NVIDIA_NC = "NVIDIA Source Code License-NC (non-commercial): weights converted from NVIDIA's StyleGAN2"
_BIGGAN_LICENSE = "Apache-2.0 (DeepMind's BigGAN-deep TF Hub modules; pytorch-pretrained-BigGAN code: MIT)"
_PCA = "https://drive.google.com/drive/folders/1zfowC7njgeWeb97eWMVE0VrfUaUHYrK-"
_BIGGAN_LAYERS = [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8)]
_BIGGAN_S3 = "https://s3.amazonaws.com/models.huggingface.co/biggan/biggan-deep-{size}-pytorch_model.bin"


def _release_backbone(name: str, description: str, file_id: str, resolution: int, license: str = _RELEASE_LICENSE,
                      page: str = _RELEASE) -> ZooEntry:
    return ZooEntry(name, "backbone", description, license, page,
                    (ZooFile(f"{name}.pt", _drive(file_id), None),), "stylegan2", resolution)


def _release_motion(name: str, description: str, folder_id: str, backbone: str, resolution: int) -> ZooEntry:
    files = (ZooFile("modelR_epoch_*.pth", None, None), ZooFile("pca_comp.npy", None, None),
             ZooFile("pca_stdev.npy", None, None))
    page = (f"motion generator: https://drive.google.com/drive/folders/{folder_id} ; PCA statistics: "
            f"{_PCA} (the folder of its backbone)")
    return ZooEntry(name, "motion", description, _RELEASE_LICENSE, page, files, "import-motion", resolution,
                    backbone=backbone)


def _biggan(size: int, layers: list, file: ZooFile, sha256_source: str) -> ZooEntry:
    return ZooEntry(f"biggan-deep-{size}", "backbone", f"BigGAN-deep {size} px, ImageNet (1000 classes)",
                    _BIGGAN_LICENSE, "https://github.com/huggingface/pytorch-pretrained-BigGAN", (file,), "biggan",
                    size, config={"output_dim": size, "layers": [list(layer) for layer in layers]},
                    sha256_source=sha256_source)


# The BigGAN-deep sizes differ only in their blocks (pytorch-pretrained-BigGAN, convert_tf_to_pytorch.py).
_BIGGAN_128 = _BIGGAN_LAYERS + [(True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)]
_BIGGAN_256 = _BIGGAN_LAYERS + [(True, 8, 8), (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2),
                                (False, 2, 2), (True, 2, 1)]
_BIGGAN_512 = _BIGGAN_256 + [(False, 1, 1), (True, 1, 1)]

ZOO: dict[str, ZooEntry] = {entry.name: entry for entry in (
    _release_backbone("stylegan2-ffhq-256", "StyleGAN2 FFHQ 256 px, rosinality's 550k-iteration run",
                      "1PQutd-JboOCOZqmd95XWxWrO8gGEvRcO", 256,
                      "MIT (rosinality/stylegan2-pytorch); trained on FFHQ (CC BY-NC-SA 4.0)",
                      "https://github.com/rosinality/stylegan2-pytorch#pretrained-checkpoints"),
    _release_backbone("stylegan2-ffhq-1024", "StyleGAN2 FFHQ 1024 px config-f (stylegan2-ffhq-config-f.pt, "
                      "rosinality's conversion; the release's FFHQ-1024 generator)",
                      "1oljdihTnT53CbHrjAe2BMcbueNjH67Gd", 1024, _NVIDIA_NC),
    _release_backbone("mocogan-hd-ffhq-256", "StyleGAN2 FFHQ 256 px of the MoCoGAN-HD release (ffhq_256.pt)",
                      "1Mw0HvFimDpdHjV1bX_VQXDxIfVKpmqC_", 256),
    _release_backbone("mocogan-hd-ucf101", "StyleGAN2 UCF-101 256 px of the MoCoGAN-HD release",
                      "1USJutDCXOxxEqgOKEzuov7tbHu6iVKdz", 256),
    _release_backbone("mocogan-hd-faceforensics", "StyleGAN2 FaceForensics 256 px of the MoCoGAN-HD release",
                      "1q8K5VCO3e-WTmC2YrI_z3Nqwf2j4BXXa", 256),
    _release_backbone("mocogan-hd-sky-timelapse", "StyleGAN2 Sky-Timelapse 128 px of the MoCoGAN-HD release",
                      "16qHqShQMAdftVQen9kGBMIUeSh5kQr9d", 128),
    _release_backbone("mocogan-hd-afhq-dog", "StyleGAN2 AFHQ-dog 512 px of the MoCoGAN-HD release",
                      "1dx5z0rp3UGyjLTWpf8P69DJy8JS9IPkE", 512),
    _release_backbone("mocogan-hd-anime", "StyleGAN2 anime portraits 512 px of the MoCoGAN-HD release",
                      "1kd73588GaF1242_WPHQuIwQo2eFJQKwH", 512),
    _release_backbone("mocogan-hd-lsun-church", "StyleGAN2 LSUN-Church 256 px config-f of the MoCoGAN-HD release",
                      "1Vk3MEzsAl88cfpztKI2hc6jSTR41tTTw", 256, _NVIDIA_NC),
    _release_motion("motion-ucf101", "MoCoGAN-HD motion, UCF-101 (in-domain)", "1rWFgh_Qzw_P33kRr6bIVcNm-KHQotlsC",
                    "mocogan-hd-ucf101", 256),
    _release_motion("motion-faceforensics", "MoCoGAN-HD motion, FaceForensics (in-domain)",
                    "1h5Mpcj-ryMqc7m5DVGs40CPoFQKfELP1", "mocogan-hd-faceforensics", 256),
    _release_motion("motion-sky-timelapse", "MoCoGAN-HD motion, Sky-Timelapse (in-domain)",
                    "1HAM87sxLfvikOvpGyKls7J19ZE5sU2O2", "mocogan-hd-sky-timelapse", 128),
    _release_motion("motion-ffhq-vox", "MoCoGAN-HD motion, FFHQ faces with VoxCeleb motion (cross-domain)",
                    "1m4mueJF-Xk1mJ9VzQq-DL_lWSMK5uKd_", "mocogan-hd-ffhq-256", 256),
    _release_motion("motion-ffhq1024-vox", "MoCoGAN-HD motion, FFHQ 1024 with VoxCeleb motion (cross-domain)",
                    "13gDzYnOXJb5t7bkDlO1MmVEFmFG9xiQt", "stylegan2-ffhq-1024", 1024),
    _release_motion("motion-afhq-vox", "MoCoGAN-HD motion, AFHQ dogs with VoxCeleb motion (cross-domain)",
                    "17hnIg_KeuwK5gUSYa1sfrJAnXbOonUbO", "mocogan-hd-afhq-dog", 512),
    _release_motion("motion-anime-vox", "MoCoGAN-HD motion, anime portraits with VoxCeleb motion (cross-domain)",
                    "1X5jIUItBtsbkFDcL-gP0bby2JrG0xAZW", "mocogan-hd-anime", 512),
    _biggan(128, _BIGGAN_128, ZooFile("pytorch_model.bin", "hf://osanseviero/BigGAN-deep-128/pytorch_model.bin"
                                      "@af0640a119a2486b24eed0985d6d54e734890bff",
                                      "b86146a8cfcde4cda135adba4b2806f78b3abe2dac9d0fd090cc3ab318604ad9"),
            "the Hugging Face Hub's Git LFS record of this file at the pinned commit (a copy of "
            "pytorch-pretrained-BigGAN's biggan-deep-128 upload)"),
    _biggan(256, _BIGGAN_256, ZooFile("pytorch_model.bin", _BIGGAN_S3.format(size=256), None),
            "none: pytorch-pretrained-BigGAN publishes no hashes"),
    _biggan(512, _BIGGAN_512, ZooFile("pytorch_model.bin", _BIGGAN_S3.format(size=512), None),
            "none: pytorch-pretrained-BigGAN publishes no hashes"),
)}


def get_entry(name: str) -> ZooEntry:
    if name not in ZOO:
        raise MocohdError(f"no zoo entry {name!r}", fix=f"see `mocohd zoo list` ({', '.join(ZOO)})")
    return ZOO[name]


def entry_dir(name: str) -> Path:
    return cache_dir() / "zoo" / name


def artefact_path(entry: ZooEntry) -> Path:
    """What fetching an entry makes: one .safetensors file."""
    return entry_dir(entry.name) / ("motion.safetensors" if entry.kind == "motion" else f"{entry.name}.safetensors")


def fetched(entry: ZooEntry) -> dict | None:
    """The record of an entry in the cache (None: not fetched)."""
    record = entry_dir(entry.name) / RECORD
    if not (record.is_file() and artefact_path(entry).is_file()):
        return None
    try:
        return json.loads(record.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def expected_hashes(entry: ZooEntry, given: list[str] | None) -> dict[str, str | None]:
    """Each file's expected sha256: the table's, else one given as FILE=HEX (or HEX when a single
    file lacks one). A given hash that contradicts the table is refused."""
    expected: dict[str, str | None] = {f.name: f.sha256 for f in entry.files}
    missing = [f.name for f in entry.files if not f.sha256]
    for item in given or []:
        name, sep, digest = item.rpartition("=")
        if not sep:
            if len(missing) != 1:
                raise MocohdError(f"--sha256 {item}: zoo entry {entry.name!r} has {len(missing) or 'no'} unverified "
                                  "files", fix=f"write FILE=HEX with FILE one of {', '.join(expected)}")
            name = missing[0]
        digest = digest.strip().lower()
        if name not in expected:
            raise MocohdError(f"--sha256: zoo entry {entry.name!r} has no file {name!r}",
                              fix=f"its files: {', '.join(expected)}")
        if len(digest) != 64 or not set(digest) <= _SHA256:
            raise MocohdError(f"--sha256 {item}: not a sha256 (64 hex digits)", fix="copy the hash again")
        if expected[name] and expected[name] != digest:
            raise MocohdError(f"--sha256 for {name} contradicts the zoo's verified hash {expected[name]}",
                              fix="drop --sha256 for this file")
        expected[name] = digest
    return expected


def _pick(source: Path, pattern: str, single: bool) -> Path:
    """The file of `source` (a file when the entry has one file, else a folder) matching `pattern`."""
    if source.is_file():
        if not single:
            raise MocohdError("this zoo entry has several files: --from must be the folder holding them",
                              path=source, fix="pass the folder")
        return source
    matches = sorted(source.glob(pattern)) if source.is_dir() else []
    if len(matches) != 1:
        raise MocohdError(f"{'no file' if not matches else f'{len(matches)} files'} matching {pattern!r} in the "
                          "--from folder", path=source, fix=f"put exactly one {pattern} there")
    return matches[0]


def _obtain(entry: ZooEntry, file: ZooFile, expected: str | None, staging: Path, source: Path | None) -> Path:
    """The local copy of one file of the entry, its sha256 checked against `expected` when known."""
    what = f"{file.name} of zoo entry {entry.name!r}"
    if source is not None:
        path = _pick(source, file.name, len(entry.files) == 1)
    elif file.url is None:
        raise MocohdError(f"{what} has no direct download", fix=f"download it from {entry.page}, then pass "
                          "--from FOLDER (the folder holding " + ", ".join(f.name for f in entry.files) + ")")
    elif file.url.startswith("hf:"):
        path = Path(resolve(file.url))
    else:
        path = staging / file.name
        download(file.url, path, sha256=expected, what=what)  # checked while it streams
        return path
    digest = sha256_of(path)
    if expected and digest != expected:
        raise MocohdError(f"{what} has sha256 {digest}, expected {expected}", path=path,
                          fix="the file is damaged or not the published one: get it again from " + entry.page)
    return path


def _link(target: Path, link: Path) -> None:
    try:
        os.symlink(os.path.abspath(target), link)
    except OSError:  # no symlinks here (some file systems, Windows without rights): copy
        shutil.copy2(target, link)


def _convert(entry: ZooEntry, files: dict[str, Path], out: Path, staging: Path) -> None:
    """Turn the downloaded files into the entry's .safetensors (see CONVERSIONS)."""
    if entry.convert == "stylegan2":
        convert_backbone(next(iter(files.values())), out, "stylegan2")
    elif entry.convert == "biggan":
        folder = staging / "biggan"
        folder.mkdir(exist_ok=True)
        (folder / "config.json").write_text(json.dumps(entry.config), encoding="utf-8")
        _link(files["pytorch_model.bin"], folder / "pytorch_model.bin")
        convert_backbone(folder, out, "biggan")
    elif entry.convert == "import-motion":
        pca = staging / "pca"
        pca.mkdir(exist_ok=True)
        for name in PCA_FILES:
            _link(files[name], pca / name)
        backbone = load_backbone(None, artefact_path(get_entry(entry.backbone)))
        release = files["modelR_epoch_*.pth"]
        import_released_motion(release, pca, backbone=backbone).save(out, source_zoo_entry=entry.name)
    else:  # a table entry with an unknown conversion is a bug in the table
        raise ValueError(f"unknown conversion {entry.convert!r}")


def fetch(name: str, *, source: str | Path | None = None, sha256: list[str] | None = None,
          trust_unverified: bool = False, force: bool = False) -> Path:
    """Download (or take from `source`), check and convert zoo entry `name`; returns the converted
    file. A fetched entry is returned at once unless `force`."""
    entry = get_entry(name)
    out = artefact_path(entry)
    if fetched(entry) and not force:
        return out
    expected = expected_hashes(entry, sha256)
    unverified = [file for file, digest in expected.items() if not digest]
    if unverified and not trust_unverified:
        raise MocohdError(f"zoo entry {name!r} has no verified sha256 for {', '.join(unverified)}",
                          fix=UNVERIFIED_FIX)
    if entry.backbone and not fetched(get_entry(entry.backbone)):
        fetch(entry.backbone, trust_unverified=trust_unverified)
    folder = entry_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=folder))
    try:
        files = {f.name: _obtain(entry, f, expected[f.name], staging, Path(source) if source else None)
                 for f in entry.files}
        hashes = {file: expected[file] or sha256_of(path) for file, path in files.items()}
        _convert(entry, files, out, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    how = "the zoo's table" if entry.verified else "given --sha256" if not unverified else \
        "unverified: accepted with --trust-unverified"
    record = {"name": name, "files": hashes, "checked_against": how, "artefact": out.name,
              "artefact_sha256": sha256_of(out), "source": str(source) if source else "download",
              "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    with atomic_path(folder / RECORD) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return out


def resolve_zoo(name: str) -> Path:
    """`zoo:NAME` -> the converted file; fetched now only when every hash of the entry is verified."""
    entry = get_entry(name)
    if fetched(entry):
        return artefact_path(entry)
    if not entry.verified:
        raise MocohdError(f"zoo entry {name!r} is not in the cache and has unverified files, so it is not fetched "
                          "implicitly", fix=f"fetch it once: mocohd zoo get {name} --sha256 FILE=HEX (or "
                                            "--trust-unverified)")
    return fetch(name)


def _zoo_reference_for(path: Path) -> str | None:
    root = Path(os.path.abspath(cache_dir() / "zoo"))
    try:
        parts = Path(os.path.abspath(path)).relative_to(root).parts
    except ValueError:
        return None
    entry = ZOO.get(parts[0]) if len(parts) == 2 else None
    return f"zoo:{entry.name}" if entry and artefact_path(entry).name == parts[1] else None


def _resolve_example(name: str) -> Path:
    return default_backbone(name)


def _resolve_example_motion(name: str) -> Path:
    return example_motion(name)


def _example_reference_for(path: Path) -> str | None:
    real = os.path.realpath(path)
    return next((f"example:{name}" for name, file in example_backbones().items() if os.path.realpath(file) == real),
                None)


register_scheme("zoo", resolve_zoo, reference_for=_zoo_reference_for, check=get_entry,
                help="zoo:NAME: a known public checkpoint (`mocohd zoo list`)")
# resolving an example is a look-up in the package: it is its own check
# example:NAME is the shipped backbone where a checkpoint is asked for and the shipped, trained motion model
# where a motion model is (--motion of sample, eval, animate: models/motion.py resolves as kind "motion")
register_scheme("example", _resolve_example, reference_for=_example_reference_for, check=_resolve_example,
                kinds={"motion": _resolve_example_motion},
                help="example:NAME: an example shipped with mocohd, its backbone (--checkpoint) or its trained "
                     "motion model (--motion) (`mocohd zoo list` shows them)")
