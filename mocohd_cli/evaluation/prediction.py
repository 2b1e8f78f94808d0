"""Video prediction (`mocohd eval --metric prediction`; the paper's Sky Time-lapse experiment): frame 0
of each real video is inverted into the backbone's latent space (mocohd_cli/models/inversion.py),
the motion model unrolls the rest from that latent, and the predicted frames 1..T-1 are compared
with the real ones by PSNR and SSIM (docs/animate.md, "Video prediction").

Real videos: the first T frames of each of the first N videos long enough, centre-cropped and
resized to the backbone's resolution (Lanczos, as training reads them), as uint8. Predicted frames
are quantised to uint8 as a written video would be. Both are compared in [0, 1]:

    PSNR  10 log10(1 / MSE) per frame, MSE floored so that an exact frame gives PSNR_CAP_DB (100),
          never inf; the headline is the mean over videos and predicted frames
    SSIM  Wang et al. 2004 with an 11x11 gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, over
          the positions where the window fits (torchmetrics), averaged over colour channels, then
          over videos and predicted frames
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..data.video import quantize
from ..infra.console import progress
from ..infra.errors import MocohdError
from ..infra.files import sha256_of
from ..models.encoder import load_encoder
from ..models.generation import latents_from_content, render, synthesis_seeds
from ..models.inversion import invert_images, latent_statistics, psnr
from .sources import FolderVideos, GeneratedVideos, check_length

# The paper's numbers for MoCoGAN-HD on Sky Time-lapse (Table 4), for the docs and the JSON.
PAPER_SKY = {"psnr": 22.286, "ssim": 0.688}
SSIM_WINDOW = 11  # with sigma 1.5, the window torchmetrics builds


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """SSIM per image of uint8 or [0, 1] float images [N, 3, H, W] (gaussian 11x11, sigma 1.5): the
    mean of torchmetrics' SSIM map over the positions where the window fits in the image (as Wang
    et al.'s reference code and scikit-image average it; torchmetrics itself also averages the
    reflect-padded border)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    a, b = (x.double() / 255.0 if x.dtype == torch.uint8 else x.double() for x in (a, b))
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise MocohdError(f"SSIM's {SSIM_WINDOW}x{SSIM_WINDOW} window needs frames of at least {SSIM_WINDOW} px, got "
                          f"{tuple(a.shape[-2:])}", fix="evaluate at a higher resolution")
    _, full = structural_similarity_index_measure(a, b, gaussian_kernel=True, sigma=1.5, kernel_size=SSIM_WINDOW,
                                                  data_range=1.0, k1=0.01, k2=0.03, return_full_image=True)
    border = SSIM_WINDOW // 2
    return full[..., border:-border, border:-border].mean(dim=(1, 2, 3)).float()


def score_prediction(real: Tensor, predicted: Tensor) -> dict:
    """PSNR and SSIM of predicted uint8 videos [N, T, 3, H, W] against the real ones: the means over
    frames 1..T-1 (`psnr`, `ssim`), frame 0 alone (the inversion: `psnr_frame0`, `ssim_frame0`) and
    the per-frame means (`psnr_per_frame`, `ssim_per_frame`, lists of T)."""
    if real.shape != predicted.shape or real.dim() != 5 or real.shape[1] < 2:
        raise MocohdError(f"real videos {tuple(real.shape)} and predicted ones {tuple(predicted.shape)} must have "
                          "the same shape [N, T >= 2, 3, H, W]", fix="predict at least 2 frames per video")
    n, t = real.shape[:2]
    flat_real, flat_fake = real.flatten(0, 1), predicted.flatten(0, 1)
    as_signed = (lambda x: x.float() / 127.5 - 1)  # psnr takes [-1, 1]
    psnrs = psnr(as_signed(flat_real), as_signed(flat_fake)).view(n, t).double()
    ssims = ssim(flat_real, flat_fake).view(n, t).double()
    return {"psnr": float(psnrs[:, 1:].mean()), "ssim": float(ssims[:, 1:].mean()),
            "psnr_frame0": float(psnrs[:, 0].mean()), "ssim_frame0": float(ssims[:, 0].mean()),
            "psnr_per_frame": psnrs.mean(0).tolist(), "ssim_per_frame": ssims.mean(0).tolist()}


def predict(backbone, motion, first_frames: Tensor, *, n_frames: int, start: int, seed: int, encoder=None,
            stats=None, **inversion) -> tuple[Tensor, Tensor]:
    """Videos [n, T, 3, H, W] (uint8) predicted from uint8 first frames [n, 3, H, W], and the
    inversion's PSNR per video. Video i (counted from `start`) draws the motion noise of `mocohd
    sample --seed` video i; `inversion` goes to `invert_images` (steps, candidates, noise, ...)."""
    noise = inversion.get("noise", "const")
    seeds = synthesis_seeds(seed, range(start, start + len(first_frames)))
    targets = first_frames.float() / 127.5 - 1
    result = invert_images(backbone, targets, encoder=encoder, stats=stats, seeds=seeds, seed=seed, **inversion)
    batch = latents_from_content(motion, result.latents, n_frames=n_frames, seed=seed, start=start)
    return quantize(render(backbone, batch, noise=noise)), result.psnr


def prediction_metrics(backbone, motion, real_root, *, num_videos: int, n_frames: int, seed: int = 0,
                       batch_size: int = 16, encoder=None, progress=None, **inversion) -> dict:
    """`score_prediction` over the first `num_videos` real videos of `real_root` that have
    `n_frames` frames, predicted from their frame 0 (see the module's docstring)."""
    if backbone.condition_dim:
        raise MocohdError(f"prediction inverts into an unconditional backbone; {backbone.name!r} is class-conditional",
                          fix="evaluate prediction with an unconditional backbone (StyleGAN2)")
    real = FolderVideos(real_root, size=backbone.resolution, max_videos=num_videos)
    real.description = f"dataset {real_root}"
    stats = latent_statistics(backbone)
    real_videos, predicted = [], []
    for clips in real.clips(n_frames, batch_size):
        fake, _ = predict(backbone, motion, clips[:, 0], n_frames=n_frames, start=sum(len(v) for v in real_videos),
                          seed=seed, encoder=encoder, stats=stats, **inversion)
        real_videos.append(clips)
        predicted.append(fake)
        if progress is not None:
            progress(sum(len(v) for v in real_videos), real.used)
    if not real_videos:
        check_length(real, n_frames)
    scores = score_prediction(torch.cat(real_videos), torch.cat(predicted))
    scores.update(videos=int(sum(len(v) for v in real_videos)), frames=n_frames,
                  resolution=backbone.resolution, paper_sky=PAPER_SKY)
    return scores


def evaluate_prediction(settings, fake, result) -> None:
    """`mocohd eval --metric prediction`: fills result.values["prediction"] (PSNR, dB) and
    ["prediction_ssim"], with the details and the protocol."""
    if not isinstance(fake, GeneratedVideos):
        raise MocohdError("prediction generates videos from the real videos' first frames",
                          fix="pass --motion MODEL (and --checkpoint) instead of --fake")
    backbone, motion = fake.backbone, fake.motion
    encoder = load_encoder(settings.encoder, backbone, device=backbone.device) if settings.encoder else None
    with progress() as bar:
        task = bar.add_task("predicting from first frames", total=None)
        scores = prediction_metrics(backbone, motion, settings.real, num_videos=settings.num_videos,
                                    n_frames=settings.frames, seed=settings.seed, batch_size=settings.batch_size,
                                    encoder=encoder, steps=settings.inversion_steps,
                                    progress=lambda done, total: bar.update(task, completed=done, total=total))
    result.values["prediction"], result.values["prediction_ssim"] = scores["psnr"], scores["ssim"]
    result.details["prediction"] = scores
    result.protocol["prediction"] = {"real": settings.real, "videos": scores["videos"], "frames": settings.frames,
                                     "resolution": backbone.resolution, "inversion_steps": settings.inversion_steps,
                                     "encoder": settings.encoder, "noise": "const",
                                     "encoder_sha256": None if encoder is None else sha256_of(settings.encoder)}

