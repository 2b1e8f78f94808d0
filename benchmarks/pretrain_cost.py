"""What `mocohd pretrain` costs here: steps per second of the example backbones' configuration, and the
time of one frames-FID measurement at a sample step (docs/pretrain_cost.md).

The steps are the real Pretrainer.train_step (64 px, batch 16, widths 4:128,8:128,16:64,32:32,64:16,
W 256, 4 mapping layers, no augmentation, as docs/examples.md trained the shipped backbones) on rendered
faces frames, after one warm-up step. The frames FID is mocohd_cli/evaluation/frames_fid.py's FramesFID
with a stand-in for the Inception detector: torchvision's Inception-v3 (random weights: the cost does not
depend on them; no download) scripted to take uint8 frames and resize them to 299 px inside, as the
StyleGAN-V detector does. The real-frame statistics (computed once per run) are timed apart from the
per-step measurement.

Usage: python benchmarks/pretrain_cost.py [--steps 32] [--threads N] [--fid-images 128] [--real-images 512]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from mocohd_cli.evaluation.frames_fid import FAKE_IMAGES, REAL_IMAGES
from mocohd_cli.infra.threads import apply_threads


def inception_stand_in(path: Path) -> None:
    import torch
    import torch.nn.functional as F
    import torchvision

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
            net.fc = torch.nn.Identity()
            self.net = torch.jit.trace(net, torch.zeros(1, 3, 299, 299))  # 2048 features, as the real one's

        def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            x = F.interpolate(x.float() / 127.5 - 1.0, size=(299, 299), mode="bilinear", align_corners=False)
            return self.net(x)

    torch.jit.save(torch.jit.script(Detector().eval()), str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32, help="timed steps (the R1 penalty comes every 16th)")
    parser.add_argument("--threads", type=int, default=None, help="default: mocohd's (docs/threads.md)")
    parser.add_argument("--fid-images", type=int, default=FAKE_IMAGES)
    parser.add_argument("--real-images", type=int, default=REAL_IMAGES)
    args = parser.parse_args()
    setting = apply_threads(args.threads)
    import torch

    from mocohd_cli.data.domains import get_domain
    from mocohd_cli.evaluation.frames_fid import FramesFID
    from mocohd_plugins.stylegan2.pretrain import PretrainConfig, Pretrainer

    frames = torch.cat([torch.from_numpy(get_domain("faces").video(v, 0, 8, 64).frames).permute(0, 3, 1, 2)
                        for v in range(max(1, args.real_images // 8))]).contiguous()
    with tempfile.TemporaryDirectory() as tmp:
        config = PretrainConfig(out=str(Path(tmp) / "run"), size=64, style_dim=256, n_mlp=4,
                                channels="4:128,8:128,16:64,32:32,64:16", batch_size=16, augment="none",
                                device="cpu", steps=args.steps + 1)
        trainer = Pretrainer(config, frames, log=lambda message: None)
        trainer.train_step()
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        step_s = (time.perf_counter() - start) / args.steps
        detector = Path(tmp) / "inception.pt"
        inception_stand_in(detector)
        start = time.perf_counter()
        fid = FramesFID(frames, detector, torch.device("cpu"), fake_images=args.fid_images,
                        real_images=args.real_images)
        real_s = time.perf_counter() - start
        start = time.perf_counter()
        fid(trainer.ema)
        fid_s = time.perf_counter() - start
    print(f"{setting.threads} thread(s) ({setting.source}), wait policy {setting.omp_wait_policy}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"pretrain step (64 px, batch 16, the example backbones' widths): {step_s:.3f} s ({1 / step_s:.2f} steps/s); "
          f"5,000 steps: {5000 * step_s / 3600:.2f} h, 28,500 steps: {28500 * step_s / 3600:.2f} h")
    print(f"frames FID at a sample step ({args.fid_images} samples, Inception-v3-sized stand-in): {fid_s:.1f} s; "
          f"real statistics once ({fid.real_images} frames): {real_s:.1f} s; at --sample-every 250 the FID adds "
          f"{fid_s / (250 * step_s):.0%} to the run")


if __name__ == "__main__":
    main()
