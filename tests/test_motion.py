import pytest
import torch

from mocohd_cli.infra.errors import MocohdError
from mocohd_cli.infra.files import read_safetensors, write_safetensors
from mocohd_cli.models.motion import MotionGenerator, load_motion, mutual_information_loss, read_motion_info


def lstm_cell_by_hand(cell, x, h, c):
    """The LSTM cell equations written out (gate order i, f, g, o as in PyTorch)."""
    gates = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def make_model(**kw):
    torch.manual_seed(0)
    comps = torch.linalg.qr(torch.randn(12, 12))[0].T[:6]
    model = MotionGenerator(12, h_dim=10, n_pca=6, w_residual=0.3, pca_components=comps,
                            pca_stdev=torch.linspace(2, 0.5, 6), **kw)
    with torch.no_grad():  # non-zero biases so the test sees them used
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("feedback", [False, True])
def test_rollout_follows_the_update_rule(feedback):
    model = make_model(feedback=feedback)
    w0, noise = torch.randn(3, 12), torch.randn(3, 5, 12)
    out = model.rollout(w0, 6, noise)
    zeros = torch.zeros(3, 10)
    h, c = lstm_cell_by_hand(model.enc_cell, w0, zeros, zeros)
    w, expected, hcs = w0, [w0], []
    for t in range(5):
        # with feedback the cell also reads the walk so far, (w_{t-1} - w_0) in the basis' units
        walked = (w - w0) @ model.pca_components.T / model.pca_stdev
        h, c = lstm_cell_by_hand(model.cell, torch.cat([noise[:, t], walked], 1) if feedback else noise[:, t], h, c)
        r = torch.tanh(h @ model.w + model.b)
        w = w + 0.3 * r @ (model.pca_stdev[:, None] * model.pca_components)
        expected.append(w)
        hcs.append(torch.cat([h, c], 1))
    torch.testing.assert_close(out.latents, torch.stack(expected, 1), atol=1e-5, rtol=1e-5)
    pred = model.fc2(torch.relu(model.fc1(torch.stack(hcs, 1))))
    torch.testing.assert_close(out.noise_pred, pred, atol=1e-5, rtol=1e-5)
    assert torch.equal(out.noise, noise)



def test_displacements_are_the_walk_in_pca_units():
    """Rollout.displacements = (w_t - w_0) P^T / s, kept in fp32 (the shared-drift penalty reads them)."""
    model = make_model()
    out = model.rollout(torch.randn(3, 12), 6, torch.randn(3, 5, 12))
    whitened = (out.latents[:, 1:] - out.latents[:, :1]) @ model.pca_components.T / model.pca_stdev
    torch.testing.assert_close(out.displacements, whitened, atol=1e-5, rtol=1e-5)
    assert out.displacements.dtype == torch.float32 and model.rollout(torch.randn(2, 12), 1).displacements.shape == (2, 0, 6)

def test_initialisation_matches_the_release_but_for_the_mi_biases():
    # models/rnn.py init_weights: per-gate orthogonal LSTM weights and zero LSTM biases,
    # orthogonal fc1/fc2 weights, w ~ N(0, 0.02), b = 0; fc1/fc2 biases zero (a deliberate
    # difference: the release keeps PyTorch's default, see docs/method.md).
    torch.manual_seed(0)
    model = MotionGenerator(64, h_dim=16, n_pca=24)
    for cell in (model.enc_cell, model.cell):
        for block in cell.weight_ih.chunk(4, 0):  # [16, 64]: orthonormal rows
            torch.testing.assert_close(block @ block.T, torch.eye(16), atol=1e-5, rtol=0)
        for block in cell.weight_hh.chunk(4, 0):
            torch.testing.assert_close(block @ block.T, torch.eye(16), atol=1e-5, rtol=0)
        # each gate block its own matrix, not one orthogonal [64, 64] matrix cut in four
        assert not torch.allclose(cell.weight_ih @ cell.weight_ih.T, torch.eye(64), atol=1e-3)
        assert cell.bias_ih.abs().sum() == 0 and cell.bias_hh.abs().sum() == 0
    assert model.b.abs().sum() == 0
    assert 0.015 < model.w.std().item() < 0.025 and abs(model.w.mean().item()) < 0.005
    fc1, fc2 = model.fc1.weight, model.fc2.weight  # [64, 32]: orthonormal columns; [64, 64]
    torch.testing.assert_close(fc1.T @ fc1, torch.eye(32), atol=1e-5, rtol=0)
    torch.testing.assert_close(fc2 @ fc2.T, torch.eye(64), atol=1e-5, rtol=0)
    assert model.fc1.bias.abs().sum() == 0 and model.fc2.bias.abs().sum() == 0


def test_unrolls_past_training_length_and_single_frame():
    model = make_model()
    assert model(torch.randn(2, 12), 64).shape == (2, 64, 12)
    w0 = torch.randn(2, 12)
    assert torch.equal(model(w0, 1)[:, 0], w0)


def test_gradients_reach_all_trained_parameters():
    model = make_model()
    out = model.rollout(torch.randn(2, 12), 4)
    (out.latents.square().mean() + mutual_information_loss(out.noise, out.noise_pred)).backward()
    for name, p in model.named_parameters():
        if name != "enc_cell.weight_hh":  # h_{-1} = 0, so this weight gets no gradient by construction
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_feedback_weights_learn_from_every_step_but_the_first():
    model = make_model(feedback=True)
    model.rollout(torch.randn(2, 12), 2).latents.square().sum().backward()  # one step: the walk so far is zero
    assert model.cell.weight_ih.grad[:, 12:].abs().sum() == 0 and model.cell.weight_ih.grad[:, :12].abs().sum() > 0
    model.zero_grad()
    model.rollout(torch.randn(2, 12), 4).latents.square().sum().backward()
    assert model.cell.weight_ih.grad[:, 12:].abs().sum() > 0


def test_feedback_sums_the_walk_in_fp32_whatever_the_models_precision():
    w0, noise = torch.randn(4, 12), torch.randn(4, 127, 12)
    half = make_model(feedback=True).bfloat16()
    seen = []
    half.cell.register_forward_pre_hook(lambda cell, args: seen.append(args[0][:, 12:].double()))
    out = half.rollout(w0.bfloat16(), 128, noise.bfloat16())
    # what the cell read at the last step is the fp32 sum of the bf16 model's own steps, rounded once to
    # bf16, not the sum of 126 roundings
    walked = out.displacements[:, -2].double()
    assert (seen[-1] - walked).abs().max() <= 0.01 * walked.abs().max()


def test_mi_loss_is_minus_one_for_perfect_reconstruction():
    noise = torch.randn(2, 3, 8)
    assert mutual_information_loss(noise, noise * 2).item() == pytest.approx(-1.0)
    assert mutual_information_loss(noise, -noise).item() == pytest.approx(1.0)


def test_save_and_load_round_trip(tmp_path):
    model = make_model(info={"n_frames": 16})
    path = model.save(tmp_path / "motion.safetensors", backbone="stylegan2", fps=8)
    loaded = load_motion(path)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert loaded.info["backbone"] == "stylegan2" and loaded.info["fps"] == 8 and loaded.info["n_frames"] == 16
    assert (loaded.h_dim, loaded.n_pca, loaded.w_residual) == (10, 6, 0.3)
    assert read_motion_info(path)["format"] == "mocohd-motion"


def test_feedback_round_trips_and_old_files_load_without_it(tmp_path):
    model = make_model(feedback=True)
    loaded = load_motion(model.save(tmp_path / "fb.safetensors"))
    assert loaded.feedback and read_motion_info(tmp_path / "fb.safetensors")["feedback"] is True
    w0, noise = torch.randn(2, 12), torch.randn(2, 7, 12)
    torch.testing.assert_close(loaded(w0, 8, noise), model(w0, 8, noise))
    # a file written before the option has no "feedback" key and is the plain recurrence
    plain = make_model().save(tmp_path / "plain.safetensors")
    tensors, meta = read_safetensors(plain)
    del meta["feedback"]
    write_safetensors(tmp_path / "old.safetensors", tensors, meta)
    assert not load_motion(tmp_path / "old.safetensors").feedback
    # metadata that claims feedback on tensors without it is refused, naming the file
    meta["feedback"] = "true"
    write_safetensors(tmp_path / "forged.safetensors", tensors, meta)
    with pytest.raises(MocohdError, match="forged.safetensors") as err:
        load_motion(tmp_path / "forged.safetensors")
    assert "cell.weight_ih" in str(err.value)


class FakeBackbone:
    name = "stylegan2"
    spec = "stylegan2"

    def __init__(self, latent_dim):
        self.latent_dim = latent_dim


def test_load_checks_the_backbone(tmp_path):
    path = make_model().save(tmp_path / "m.safetensors", backbone="stylegan2")
    load_motion(path, FakeBackbone(12))
    with pytest.raises(MocohdError, match="12-d latent space"):
        load_motion(path, FakeBackbone(16))
    other = FakeBackbone(12)
    other.name = other.spec = "biggan"
    with pytest.raises(MocohdError, match="made for backbone 'stylegan2'"):
        load_motion(path, other)


def test_load_rejects_files_that_are_not_motion_models(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(MocohdError, match="junk.safetensors"):
        load_motion(junk)
    with pytest.raises(MocohdError, match="not found"):
        load_motion(tmp_path / "missing.safetensors")
