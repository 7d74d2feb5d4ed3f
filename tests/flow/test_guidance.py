"""CFG wrapper (one doubled batch, unconditional first) and the guidance-distilled single-pass student."""

from __future__ import annotations

import copy

import pytest
import torch

from frieren_rt.flow import (
    EvalCounter,
    cfg_velocity,
    combine_guidance,
    conditional_velocity,
    draw_noise,
    euler,
    guidance_distillation_loss,
    guided_states,
    prefix_guidance_scale,
    projected_guidance,
    rescaled_guidance,
    tail_guidance_scale,
)
from frieren_rt.model import VectorField, preset
from tests.flow.toy import CFG_SCALE, NUM_CLASSES, train


class SpyNet(torch.nn.Module):
    """Records every call; its velocity depends on x, t, the condition and an optional per-sample extra."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, torch.Tensor]] = []

    def forward(self, x, t, cond, *, extra=None, shared=None):
        self.calls.append({"x": x, "t": t, "cond": cond, "extra": extra, "shared": shared})
        out = x * (1 + t[:, None]) + cond
        return out if extra is None else out + extra


def test_combine_guidance_endpoints_and_formula():
    v_u, v_c = torch.randn(4, 3), torch.randn(4, 3)
    assert torch.equal(combine_guidance(v_u, v_c, 0.0), v_u)
    assert torch.allclose(combine_guidance(v_u, v_c, 1.0), v_c)
    assert torch.allclose(combine_guidance(v_u, v_c, 4.5), v_u + 4.5 * (v_c - v_u))


def test_projected_guidance_is_cfg_at_parallel_one_and_drops_the_part_along_the_prediction_at_zero():
    gen = torch.Generator().manual_seed(0)
    v_u, v_c, x = (torch.randn(3, 4, 5, generator=gen) for _ in range(3))
    t = torch.tensor([0.1, 0.5, 0.9])
    assert torch.allclose(projected_guidance(v_u, v_c, 4.5, x, t, 1.0), combine_guidance(v_u, v_c, 4.5), atol=1e-6)
    update = projected_guidance(v_u, v_c, 4.5, x, t, 0.0) - v_c  # what guidance adds to the conditional field
    x1_c = x + (1 - t).view(-1, 1, 1) * v_c  # the conditional endpoint prediction
    assert torch.allclose((update * x1_c).sum((1, 2)), torch.zeros(3), atol=1e-4)  # orthogonal per sample
    assert torch.allclose(projected_guidance(v_u, v_c, 1.0, x, t, 0.0), v_c)  # scale 1 is the conditional field


def test_rescaled_guidance_is_plain_at_zero_and_gives_the_endpoint_the_conditional_spread_at_one():
    gen = torch.Generator().manual_seed(0)
    v_u, v_c, x = (torch.randn(3, 4, 5, generator=gen) for _ in range(3))
    t = torch.tensor([0.0, 0.5, 0.9])
    v_g = combine_guidance(v_u, v_c, 4.5)
    assert torch.equal(rescaled_guidance(v_g, v_c, x, t, 0.0), v_g)
    left = (1 - t).view(-1, 1, 1)
    x1 = x + left * rescaled_guidance(v_g, v_c, x, t, 1.0)  # the rescaled endpoint prediction
    assert torch.allclose(x1.std((1, 2)), (x + left * v_c).std((1, 2)), rtol=1e-4)
    ratio = (x + left * v_c).std((1, 2)) / (x + left * v_g).std((1, 2))
    assert torch.allclose(x1, (x + left * v_g) * ratio.view(-1, 1, 1), atol=1e-5)  # a scaling, not a new direction
    half = x + left * rescaled_guidance(v_g, v_c, x, t, 0.5)  # phi blends the two predictions
    assert torch.allclose(half, 0.5 * x1 + 0.5 * (x + left * v_g), atol=1e-5)
    x, cond, null = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen), torch.zeros(1, 4)
    v = cfg_velocity(SpyNet(), cond, null, 4.5, rescale=0.7)(x, t)  # cfg_velocity applies it on request
    v_u, v_c = SpyNet()(x, t, null.expand_as(cond)), SpyNet()(x, t, cond)
    assert torch.allclose(v, rescaled_guidance(combine_guidance(v_u, v_c, 4.5), v_c, x, t, 0.7))


def test_prefix_guidance_eases_only_the_free_latents_after_a_prefix_that_ends_in_sound():
    mask = torch.zeros(3, 1, 6)
    mask[:, :, :2] = 1.0  # two known latents each
    s = prefix_guidance_scale(mask, torch.tensor([1.0, 0.0, 1.0]), 4.5, 1.0)
    assert s.shape == (3, 1, 6)
    assert torch.equal(s[0, 0], torch.tensor([4.5, 4.5, 1.0, 1.0, 1.0, 1.0]))  # eased after the sound
    assert torch.equal(s[1, 0], torch.full((6,), 4.5))  # a silent prefix keeps the full scale
    tail = torch.full((3, 1, 6), 2.0)  # composes with a per-latent scale (tail_guidance_scale)
    assert torch.equal(prefix_guidance_scale(mask, torch.ones(3), tail, 1.0)[2, 0], torch.tensor([2.0, 2, 1, 1, 1, 1]))


def test_cfg_equals_separate_branches_with_one_doubled_call_unconditional_first():
    net = SpyNet()
    x, t = torch.randn(3, 2), torch.rand(3)
    cond, null = torch.randn(3, 2), torch.zeros(1, 2)
    extra, shared = torch.randn(3, 2), torch.arange(5)
    guided = cfg_velocity(net, cond, null, 4.5, extra=extra, shared=shared)(x, t)
    assert len(net.calls) == 1, "both branches in ONE network call"
    call = net.calls[0]
    assert call["x"].shape == (6, 2) and torch.equal(call["x"], torch.cat([x, x]))
    assert torch.equal(call["t"], torch.cat([t, t]))
    assert torch.equal(call["cond"][:3], null.expand(3, 2)), "unconditional half first (official order)"
    assert torch.equal(call["cond"][3:], cond)
    assert torch.equal(call["extra"], torch.cat([extra, extra])), "per-sample kwargs are doubled"
    assert call["shared"] is shared, "1-D kwargs (e.g. cond_index (T,)) are shared"
    v_u = SpyNet()(x, t, null.expand(3, 2), extra=extra)
    v_c = SpyNet()(x, t, cond, extra=extra)
    assert torch.allclose(guided, v_u + 4.5 * (v_c - v_u))


def test_cfg_wraps_vector_field_with_its_null_and_known_latents():
    torch.manual_seed(0)
    model = VectorField(preset("small", depth=1, hidden=64, heads=1, cond_dim=32, raw_cond_dim=24)).eval()
    b, c, t_len = 2, model.cfg.latent_channels, 16
    x, t = torch.randn(b, c, t_len), torch.tensor([0.3, 0.7])
    cond = torch.randn(b, 12, 24)
    known, mask = torch.randn(b, c, t_len), (torch.arange(t_len) < 5).float().expand(b, 1, t_len)
    counted = EvalCounter(model)
    with torch.no_grad():
        guided = cfg_velocity(counted, cond, model.null_condition(cond), 3.0, known=known, mask=mask)(x, t)
        v_u = model(x, t, model.null_condition(cond), known=known, mask=mask)
        v_c = model(x, t, cond, known=known, mask=mask)
    assert (counted.calls, counted.rows) == (1, 2 * b)
    assert torch.allclose(guided, v_u + 3.0 * (v_c - v_u), atol=1e-5)


def test_cfg_rejects_a_batch_mismatch():
    with pytest.raises(ValueError, match="batch"):
        cfg_velocity(SpyNet(), torch.zeros(3, 2), torch.zeros(1, 2), 2.0)(torch.zeros(2, 2), torch.zeros(2))


@pytest.fixture(scope="module")
def guidance_student(base):
    """A single-pass student trained on the teacher's guided velocity at states of guided sampling."""
    labels = torch.arange(1024) % NUM_CLASSES
    teacher_v = cfg_velocity(base.net, labels, None, CFG_SCALE)
    xs, ts = guided_states(teacher_v, draw_noise((1024, 2), generator=torch.Generator().manual_seed(5)), 25)
    ys = labels.repeat(25)
    student = copy.deepcopy(base.net).requires_grad_(True).train()

    def loss(gen):
        i = torch.randint(0, xs.shape[0], (256,), generator=gen)
        return guidance_distillation_loss(conditional_velocity(student, ys[i]),
                                          cfg_velocity(base.net, ys[i], None, CFG_SCALE), xs[i], ts[i])

    train(student, loss, steps=600, lr=1e-3, seed=6)
    return student.eval().requires_grad_(False)


def test_guidance_distilled_student_matches_guided_velocity_in_one_pass(base, heldout, guidance_student):
    labels = heldout.labels
    with torch.no_grad():
        xs, ts = guided_states(cfg_velocity(base.net, labels, None, CFG_SCALE), heldout.noise, 25)
        ys = labels.repeat(25)
        target = cfg_velocity(base.net, ys, None, CFG_SCALE)(xs, ts)
        rel = lambda v: ((v - target).norm(dim=1).mean() / target.norm(dim=1).mean()).item()  # noqa: E731
        student_err, plain_err = rel(guidance_student(xs, ts, ys)), rel(base.net(xs, ts, ys))
    assert student_err < 0.1, f"student vs guided velocity: relative error {student_err:.3f} >= 0.1"
    assert student_err < 0.3 * plain_err, (
        f"student error {student_err:.3f} should be far below the unguided conditional's {plain_err:.3f}")

    teacher_net, student_net = EvalCounter(base.net), EvalCounter(guidance_student)
    with torch.no_grad():
        guided = euler(cfg_velocity(teacher_net, labels, None, CFG_SCALE), heldout.noise, 25)
        single = euler(conditional_velocity(student_net, labels), heldout.noise, 25)
    assert teacher_net.calls == student_net.calls == 25
    assert student_net.rows * 2 == teacher_net.rows, (
        f"network passes per sample: {teacher_net.rows // len(labels)} -> {student_net.rows // len(labels)}")
    sample_err = (single - guided).norm(dim=1).mean().item()
    assert sample_err < 0.1, f"single-pass samples differ from guided ones by {sample_err:.3f} "


def test_tail_guidance_scale_eases_from_the_full_scale_to_the_tail_scale_per_latent():
    tail = torch.tensor([[[0.0, 0.5, 1.0]]])  # (B, 1, T)
    scale = tail_guidance_scale(tail, 4.5, 1.5)
    torch.testing.assert_close(scale, torch.tensor([[[4.5, 3.0, 1.5]]]))
    v_u, v_c = torch.zeros(1, 2, 3), torch.ones(1, 2, 3)
    torch.testing.assert_close(combine_guidance(v_u, v_c, scale), scale.expand(1, 2, 3))  # one scale per latent
