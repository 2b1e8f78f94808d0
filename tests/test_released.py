"""Released MoCoGAN-HD motion generators: imported models follow the released update rule."""
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mocohd_cli import MocohdError
from mocohd_cli.cli import app
from mocohd_cli.models.motion import load_motion, read_motion_info
from mocohd_cli.workflows.released import import_released_motion

LATENT, H_DIM, N_PCA, K = 32, 6, 5, 8  # K: components stored in the release's PCA folder


def write_release(folder, *, prefix="", seed=0):
    """A modelR_epoch_N.pth keyed like MoCoGAN-HD's RNNModule.state_dict(), plus its PCA folder."""
    gen = torch.Generator().manual_seed(seed)
    state = {"w": torch.randn(H_DIM, N_PCA, generator=gen) * 0.5, "b": torch.randn(N_PCA, generator=gen) * 0.1}
    for cell in ("enc_cell", "cell"):
        state[f"{cell}.weight_ih"] = torch.randn(4 * H_DIM, LATENT, generator=gen) * 0.3
        state[f"{cell}.weight_hh"] = torch.randn(4 * H_DIM, H_DIM, generator=gen) * 0.3
        state[f"{cell}.bias_ih"] = torch.randn(4 * H_DIM, generator=gen) * 0.1
        state[f"{cell}.bias_hh"] = torch.randn(4 * H_DIM, generator=gen) * 0.1
    state.update({"fc1.weight": torch.randn(LATENT, 2 * H_DIM, generator=gen), "fc1.bias": torch.randn(LATENT, generator=gen),
                  "fc2.weight": torch.randn(LATENT, LATENT, generator=gen), "fc2.bias": torch.randn(LATENT, generator=gen)})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "modelR_epoch_3.pth"
    torch.save({prefix + k: v for k, v in state.items()}, path)
    pca = folder / "pca"
    pca.mkdir(exist_ok=True)
    comp = np.linalg.qr(np.random.default_rng(seed).normal(size=(LATENT, LATENT)))[0][:K]  # float64, as sklearn
    np.save(pca / "pca_comp.npy", comp)
    np.save(pca / "pca_stdev.npy", np.linspace(3.0, 0.5, K))
    return path, pca, state, comp, np.linspace(3.0, 0.5, K)


def lstm_cell(x, h, c, state, cell):
    """LSTMCell by hand (gate order i, f, g, o)."""
    gates = x @ state[f"{cell}.weight_ih"].t() + state[f"{cell}.bias_ih"] + h @ state[f"{cell}.weight_hh"].t() \
        + state[f"{cell}.bias_hh"]
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def released_rule(state, comp, stdev, z, noise, w_residual):
    """RNNModule.forward of the release, written out: trajectory and the MI head's e_rec."""
    pca_mul = torch.tensor(comp[:N_PCA], dtype=torch.float32) * torch.tensor(stdev[:N_PCA], dtype=torch.float32)[:, None]
    zeros = z.new_zeros(z.shape[0], H_DIM)
    h, c = lstm_cell(z, zeros, zeros, state, "enc_cell")
    out, recs = [z], []
    for t in range(noise.shape[1]):
        h, c = lstm_cell(noise[:, t], h, c, state, "cell")
        out.append(out[-1] + w_residual * torch.tanh(h @ state["w"] + state["b"]) @ pca_mul)
        hc = torch.cat([h, c], dim=1)
        recs.append(torch.relu(hc @ state["fc1.weight"].t() + state["fc1.bias"]) @ state["fc2.weight"].t() + state["fc2.bias"])
    return torch.stack(out, dim=1), torch.stack(recs, dim=1)


@pytest.mark.parametrize("w_residual", [0.2, 0.5])
def test_imported_model_follows_the_released_rule(tmp_path, w_residual):
    release, pca, state, comp, stdev = write_release(tmp_path / "release")
    out = tmp_path / "motion.safetensors"
    result = CliRunner().invoke(app, ["import-motion", str(release), "--pca-dir", str(pca), "--out", str(out),
                                      "--w-residual", str(w_residual)])
    assert result.exit_code == 0, result.output
    motion = load_motion(out)
    assert (motion.latent_dim, motion.h_dim, motion.n_pca, motion.w_residual) == (LATENT, H_DIM, N_PCA, w_residual)
    z = torch.randn(3, LATENT, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(3, 15, LATENT, generator=torch.Generator().manual_seed(2))
    expected, expected_rec = released_rule(state, comp, stdev, z, noise, w_residual)
    with torch.no_grad():
        rollout = motion.rollout(z, 16, noise)
    torch.testing.assert_close(rollout.latents, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rollout.noise_pred, expected_rec, atol=1e-4, rtol=1e-4)
    assert (rollout.latents[:, 1:] - rollout.latents[:, :-1]).abs().max() > 1e-3  # it moves
    info = read_motion_info(out)
    assert info["source_checkpoint"] == "modelR_epoch_3.pth" and len(info["source_sha256"]) == 64
    assert info["n_frames"] == 16 and "backbone" not in info


def test_backbone_is_checked_and_recorded(tmp_path, tiny_stylegan2_checkpoint, tiny_stylegan2):
    release, pca, *_ = write_release(tmp_path / "release", prefix="module.")  # saved from a DDP wrapper
    out = tmp_path / "motion.safetensors"
    result = CliRunner().invoke(app, ["import-motion", str(release), "--pca-dir", str(pca), "--out", str(out),
                                      "--checkpoint", str(tiny_stylegan2_checkpoint)])
    assert result.exit_code == 0, result.output
    info = read_motion_info(out)
    assert info["backbone"] == "stylegan2" and info["backbone_checkpoint"] == str(tiny_stylegan2_checkpoint)
    assert info["backbone_sha256"] == tiny_stylegan2.checkpoint_sha256
    load_motion(out, tiny_stylegan2)  # belongs together
    named = import_released_motion(release, pca, backbone="stylegan2")
    assert named.info["backbone"] == "stylegan2"

    wide_backbone = type(tiny_stylegan2)(size=8, style_dim=16, n_mlp=1, channels={4: 8, 8: 8})  # 16-d W
    wide_backbone.checkpoint_path = None
    with pytest.raises(MocohdError, match="32-d latent space but backbone"):
        import_released_motion(release, pca, backbone=wide_backbone)


def test_bad_releases_give_clear_errors(tmp_path):
    release, pca, state, *_ = write_release(tmp_path / "release")
    broken = tmp_path / "broken.pth"
    torch.save({k: v for k, v in state.items() if k != "cell.weight_hh"}, broken)
    with pytest.raises(MocohdError, match="no cell.weight_hh"):
        import_released_motion(broken, pca)
    torch.save({**state, "b": torch.zeros(N_PCA + 1)}, broken)
    with pytest.raises(MocohdError, match="inconsistent shapes"):
        import_released_motion(broken, pca)
    np.save(pca / "pca_stdev.npy", np.ones(N_PCA - 1))
    with pytest.raises(MocohdError, match="pca_stdev.npy has shape"):
        import_released_motion(release, pca)
    (pca / "pca_comp.npy").unlink()
    with pytest.raises(MocohdError, match="pca_comp.npy not found"):
        import_released_motion(release, pca)
    runner = CliRunner()
    result = runner.invoke(app, ["import-motion", str(release), "--pca-dir", str(pca), "--out", str(tmp_path / "m.pt")])
    assert result.exit_code != 0
    result = runner.invoke(app, ["import-motion", str(release), "--pca-dir", str(pca), "--out",
                                 str(tmp_path / "m.safetensors"), "--backbone", "no-such-backbone"])
    assert result.exit_code != 0 and not (tmp_path / "m.safetensors").exists()
