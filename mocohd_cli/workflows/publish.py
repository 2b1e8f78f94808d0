"""`mocohd push` as a library: a run folder -> a Hugging Face Hub model repository.

What is uploaded (`stage`): motion.safetensors, the run's config.toml, sample.gif (the run's
latest sample), README.md, a model card whose metadata holds the backbone's name and sha256, the
dataset, the schedule and the run's eval metrics, and provenance.toml only when asked for (it holds
the command line, the platform and the git commit). A motion file records where its backbone
checkpoint is; the uploaded copy records a reference another machine can resolve (hf://, zoo:,
example:; given with --backbone-ref or found from the local path), so `mocohd sample --motion
hf://OWNER/NAME/motion.safetensors` needs nothing else. No local path leaves the machine: in the
uploaded copies of the motion file's metadata and of config.toml every path becomes the reference
to the same file when there is one, else its last component (`portable_value`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..infra.download import OFFLINE_ENVS, offline
from ..infra.errors import MocohdError
from ..infra.files import read_safetensors, write_safetensors
from ..infra.hub import (HF_SCHEME, check_reference, hub_endpoint, hub_http_error, is_reference, parse_hf,
    portable_reference, split_reference)
from ..infra.provenance import PROVENANCE_FILE, read_provenance
from ..infra.runs import RunDir, dumps_toml, read_toml
from ..infra.schema import decode_metadata
from ..infra.tensorboard import gif_bytes
from ..infra.version import __version__
from ..models.motion import read_motion_info

CARD = "README.md"
SAMPLE = "sample.gif"
SCHEDULE_KEYS = ("mode", "preset", "iterations", "frames", "time_step", "video_frame_size", "batch_size",
                 "global_batch", "lr", "g_steps", "h_dim", "n_pca", "w_residual", "motion_feedback", "seed", "precision")
_EVAL = re.compile(r"eval at step (\d+): (\S+)=(\S+)")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_SEPARATORS = re.compile(r"[\\/]")  # POSIX and Windows paths alike
_NAMED = re.compile(r"^(\w+=)(.*)$", re.S)  # NAME=PATH settings (--eval-detector)


@dataclass
class Staged:
    files: dict[str, Path]  # path in the repository -> local file
    card: str
    backbone_ref: str | None
    left_out: dict[str, str]  # files of the run that are not uploaded -> why


def portable_value(value):
    """A setting or metadata value as it can be published (lists and tables item by item): a
    reference stays; a local path becomes the reference to the same file when there is one (a file
    of the Hub cache, the zoo or the examples), else its last component (NAME=PATH keeps NAME=);
    other values stay."""
    if isinstance(value, list):
        return [portable_value(item) for item in value]
    if isinstance(value, dict):
        return {key: portable_value(item) for key, item in value.items()}
    if not isinstance(value, str) or is_reference(value):
        return value
    named = _NAMED.match(value)
    if named:
        return named.group(1) + portable_value(named.group(2))
    if not _SEPARATORS.search(value):
        return value
    return portable_reference(value) or _SEPARATORS.split(value.rstrip("/\\"))[-1]


def eval_metrics(run: RunDir) -> dict[str, dict]:
    """{metric: {"value", "step"}} of the last evaluation of each metric in the run's log."""
    metrics: dict[str, dict] = {}
    if run.log.is_file():
        for line in run.log.read_text(encoding="utf-8", errors="replace").splitlines():
            found = _EVAL.search(line)
            if found:
                metrics[found.group(2)] = {"value": float(found.group(3)), "step": int(found.group(1))}
    return metrics


def latest_sample(run: RunDir) -> Path | None:
    """The sample video of the highest step (gif preferred, else mp4)."""
    def step(path: Path) -> int:
        digits = path.stem.rpartition("_")[2]
        return int(digits) if digits.isdigit() else -1

    for suffix in ("gif", "mp4"):
        found = sorted(run.samples.glob(f"step_*.{suffix}"), key=step)
        if found:
            return found[-1]
    return None


def _as_gif(video: Path, out: Path) -> Path:
    if video.suffix == ".gif":
        return video
    import imageio.v3 as iio

    frames = iio.imread(video, plugin="pyav")  # [T, H, W, 3] uint8
    meta = iio.immeta(video, plugin="pyav")
    out.write_bytes(gif_bytes(frames, float(meta.get("fps") or 8)))
    return out


def check_repo_id(repo_id: str) -> str:
    if not _REPO.match(repo_id):
        raise MocohdError(f"--repo {repo_id!r} is not OWNER/NAME", fix="e.g. --repo my-name/faces-motion")
    return repo_id


def base_model(backbone_ref: str | None) -> str | None:
    """The Hub model repository the backbone comes from (the card's `base_model`), or None."""
    parts = split_reference(backbone_ref)
    if parts is None or parts[0] != HF_SCHEME:
        return None
    file = parse_hf(backbone_ref)
    return file.repo_id if file.repo_type == "model" else None


def model_card(repo_id: str, info: dict, config: dict, metrics: dict, *, backbone_ref: str | None,
               license: str, provenance: list[dict], has_sample: bool) -> str:
    """README.md: YAML metadata (huggingface_hub's ModelCardData) and the text."""
    from huggingface_hub import ModelCardData

    dataset = Path(str(config.get("data") or "?")).name
    backbone = {"name": info.get("backbone_name") or info.get("backbone"), "spec": info.get("backbone"),
                "sha256": info.get("backbone_sha256"), "checkpoint": backbone_ref}
    schedule = {key: config[key] for key in SCHEDULE_KEYS if config.get(key) is not None}
    meta = ModelCardData(
        library_name="mocohd", license=license,
        tags=["mocohd", "mocogan-hd", "video-generation", str(backbone["name"] or "backbone")],
        base_model=base_model(backbone_ref),
        mocohd={"version": info.get("version") or __version__, "backbone": backbone, "dataset": dataset,
                "schedule": schedule, "eval": metrics, "format": info.get("format")},
    )
    use = f"mocohd sample --motion hf://{repo_id}/motion.safetensors --num-videos 4 --format gif"
    lines = [f"---\n{meta.to_yaml()}\n---", f"# {repo_id.split('/')[1]}", "",
             "A MoCoGAN-HD motion model trained with [mocohd](https://pypi.org/project/mocohd/): an LSTM that walks "
             f"the latent space of the frozen image generator `{backbone['name']}`.", "", "## Use", "", "```bash",
             use, "```", ""]
    if backbone_ref:
        lines += [f"The backbone checkpoint is fetched from `{backbone_ref}`.", ""]
    else:
        lines += [f"The backbone checkpoint was a local file ({Path(str(info.get('backbone_checkpoint'))).name}, "
                  f"sha256 `{backbone['sha256']}`): pass it with `--checkpoint`.", ""]
    lines += ["## Backbone", "", "| name | spec | sha256 | checkpoint |", "| --- | --- | --- | --- |",
              f"| {backbone['name']} | {backbone['spec']} | `{backbone['sha256']}` | {backbone_ref or 'local file'} |",
              "", "## Training", "", f"Dataset: `{dataset}` ({config.get('mode', '?')}).", "",
              "| setting | value |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in schedule.items()], ""]
    lines += ["## Evaluation", ""]
    if metrics:
        lines += ["| metric | value | step |", "| --- | --- | --- |",
                  *[f"| {name} | {m['value']:.6g} | {m['step']} |" for name, m in metrics.items()], ""]
    else:
        lines += ["The run was not evaluated during training (`mocohd train --eval-every N --eval-metric NAME`).", ""]
    if has_sample:
        lines += ["## Sample", "", f"![videos sampled during training]({SAMPLE})", ""]
    if provenance:
        first = provenance[0]
        lines += ["## Provenance", "", f"mocohd {first.get('mocohd')}, torch {first.get('torch')}, CUDA "
                  f"{first.get('cuda') or 'none'}, device {first.get('device')}"
                  + (f", git commit `{first['git_commit']}`" if first.get("git_commit") else "")
                  + f"; {len(provenance)} start(s), see provenance.toml.", ""]
    return "\n".join(lines)


def stage(run_path: str | Path, staging: Path, repo_id: str, *, backbone_ref: str | None = None,
          license: str = "other", provenance: bool = False) -> Staged:
    """Write what `push` uploads into `staging` (the run folder is left as it is); provenance.toml
    only with `provenance`."""
    run = RunDir(run_path)
    if not run.motion.is_file():
        raise MocohdError("this run has no motion.safetensors (it has not finished)", path=run.path,
                          fix="push a finished run (see `mocohd train`), or wait for it to finish")
    if not run.config.is_file():
        raise MocohdError("this run has no config.toml", path=run.path, fix="push a run folder written by mocohd")
    if backbone_ref is not None:
        check_reference(backbone_ref, "--backbone-ref")
    info = read_motion_info(run.motion)
    ref = backbone_ref or portable_reference(info.get("backbone_checkpoint"))
    tensors, raw = read_safetensors(run.motion, what="motion model")
    # The uploaded copy says where the backbone comes from (else only the file's name); the local file is unchanged.
    meta = portable_value(decode_metadata(raw, source=run.motion, what="motion model metadata"))
    if ref:
        meta["backbone_checkpoint"] = ref
    config = portable_value(read_toml(run.config))
    try:
        config_text = dumps_toml(config)
    except (TypeError, ValueError) as exc:
        raise MocohdError(f"config.toml holds a value push cannot rewrite ({exc})", path=run.config,
                          fix="push a run folder written by mocohd") from exc
    (staging / "config.toml").write_text(config_text, encoding="utf-8")
    files = {"motion.safetensors": write_safetensors(staging / "motion.safetensors", tensors, meta),
             "config.toml": staging / "config.toml"}
    left_out = {}
    if (run.path / PROVENANCE_FILE).is_file():
        if provenance:
            files[PROVENANCE_FILE] = run.path / PROVENANCE_FILE
        else:
            left_out[PROVENANCE_FILE] = "it holds the command line, the platform and the git commit: --provenance"
    sample = latest_sample(run)
    if sample is not None:
        files[SAMPLE] = _as_gif(sample, staging / SAMPLE)
    card = model_card(check_repo_id(repo_id), portable_value(info), config, eval_metrics(run), backbone_ref=ref,
                      license=license, provenance=read_provenance(run.path) if provenance else [],
                      has_sample=sample is not None)
    (staging / CARD).write_text(card, encoding="utf-8")
    files[CARD] = staging / CARD
    return Staged(files, card, ref, left_out)


@dataclass
class Pushed:
    url: str
    private: bool  # the repository's visibility, as the Hub reports it


def upload(staged: Staged, repo_id: str, *, private: bool, message: str) -> Pushed:
    """Create the repository (if needed) and upload the staged files in one commit. An existing
    repository keeps its visibility (huggingface_hub's create_repo leaves it): asked for a private
    one, a public repository is refused before anything is uploaded."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if offline():
        raise MocohdError(f"pushing needs the network, and {' / '.join(OFFLINE_ENVS)} is set",
                          fix="unset the variable (or use --dry-run to see what would be uploaded)")
    api = HfApi(endpoint=hub_endpoint())
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        is_private = bool(api.repo_info(repo_id, repo_type="model").private)
        if private and not is_private:
            raise MocohdError(f"--private was asked for, but {repo_id} already exists and is public: nothing was "
                              "uploaded", fix="make the repository private on its settings page, push to another "
                                              "--repo, or drop --private to publish it")
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path))
                      for name, path in staged.files.items()]
        commit = api.create_commit(repo_id, operations=operations, commit_message=message, repo_type="model")
    except HfHubHTTPError as exc:
        raise hub_http_error(exc, f"the upload to {repo_id}", f"write to {repo_id.split('/')[0]}") from exc
    except OSError as exc:  # connection errors
        raise MocohdError(f"could not reach the Hub to push {repo_id} ({type(exc).__name__})",
                          fix="check the network (and HF_ENDPOINT if set)") from exc
    return Pushed(getattr(commit, "commit_url", None) or f"{repo_id}", is_private)
