"""The built-in examples' schedules (`mocohd train` / `mocohd transfer` without arguments, and the presets
example-train / example-transfer that hold them; mocohd_cli/workflows/builtin.py adds the examples' files).

Kept in the training layer so that mocohd_cli/training/presets.py can build its presets from them.
"""
from __future__ import annotations

# The example backbones' side (mocohd_cli/assets/stylegan2_<domain>_64.safetensors).
EXAMPLE_SIZE = 64

# Short schedules: a 2-core CPU finishes each in a few minutes (numbers in docs/benchmarks.md).
QUICK_SCHEDULE = dict(
    frames=8, time_step=2, video_frame_size=EXAMPLE_SIZE,
    h_dim=128, n_pca=128, pca_samples=20_000,
    d_channels=32, batch_size=4, iterations=80, lr=5e-4,  # 5x the authors' lr: motion shows within 80 iterations
    # without it every video walks the same way and the faces dissolve (CHANGELOG.md, development history)
    w_drift=100.0, drift_horizon=32,
    # the LSTM reads its walk so far: long videos drift less (CHANGELOG.md, development history: motion feedback)
    motion_feedback=True,
    log_every=10, sample_every=80, checkpoint_every=20, num_samples=4, sample_format="mp4",
    workers=0, fps=8.0,
)


# The latent motion discriminator of the in-domain example (CHANGELOG.md, development history): its weight, and
# the example dataset's videos projected into the faces backbone (shipped: projecting them took 17 minutes
# on the 2-core CPU, far longer than the whole quick start).
EXAMPLE_LATENT_MOTION = 20.0
# The identity loss of the in-domain example (CHANGELOG.md, development history): its weight, and the identity encoder
# trained on the example dataset's videos (shipped: training it takes about a minute on the 2-core CPU).
EXAMPLE_IDENTITY = 5.0
# The in-domain example's motion basis (CHANGELOG.md, development history): the PCA of its projected training
# videos' walks (the shipped projections above), not of sampled content codes.
EXAMPLE_PCA_SOURCE = "videos"


# The latent phase of the in-domain example (docs/method.md, "Latent phase"): steps on the shipped projections
# before the rendered iterations (about a minute on the 2-core CPU), and the step size its walks need: half of
# the projected walks' steps are larger than the release's 0.2 PCA units per direction allows
# (docs/motion_control.md, "The latent phase").
EXAMPLE_LATENT_ITERATIONS = 1000
EXAMPLE_LATENT_W_RESIDUAL = 1.0


def example_schedule(mode: str) -> dict:
    """The built-in example's settings of `mode` ("in-domain" or "cross-domain") without its files (the
    backbone, the videos, the shipped projections and identity encoder of those videos): what the presets
    example-train and example-transfer hold (mocohd_cli/training/presets.py). On other videos the
    in-domain one projects them for the latent motion discriminator and trains an identity encoder on
    them, each once (cached)."""
    if mode == "in-domain":
        return dict(QUICK_SCHEDULE, mode="in-domain", backbone="stylegan2", w_latent_motion=EXAMPLE_LATENT_MOTION,
                    pca_source=EXAMPLE_PCA_SOURCE, w_identity=EXAMPLE_IDENTITY,
                    latent_iterations=EXAMPLE_LATENT_ITERATIONS, w_residual=EXAMPLE_LATENT_W_RESIDUAL)
    return dict(QUICK_SCHEDULE, mode="cross-domain", backbone="stylegan2",
                # a narrow contrastive D and a queue that fills quickly; a cross-domain iteration costs
                # about 1.3x an in-domain one on the CPU, hence fewer iterations
                image_d_channels=32, queue_size=256, iterations=60, sample_every=60,
                # the video discriminator sees frames minus frame 0: on whole clips it told the domains apart by
                # their look, and the robots walked towards the faces' colours and dissolved (200 iterations:
                # identity drift 6.8x the real robots', 9.0x over 64 frames); with the motion view the shared-drift
                # penalty no longer freezes them; half the step size lowers the drift a little more
                # (CHANGELOG.md, development history)
                video_d_view="motion", w_residual=0.1)
