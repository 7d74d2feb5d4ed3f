"""Rectified flow for Frieren: training objective, CFG wrapper, samplers, reflow and distillation.

Everything works on one velocity contract, ``v(x, t) -> Tensor`` with t a (B,) float tensor in [0, 1]
(0 noise, 1 data); conditions and guidance are bound by closures (``conditional_velocity``,
``cfg_velocity``). See ../shared/reference/frieren.md, "Training and sampling".
"""

from frieren_rt.flow.distill import guidance_distillation_loss, guided_states, one_step_distillation_loss
from frieren_rt.flow.guidance import (FRIEREN_CFG_SCALE, cfg_velocity, combine_guidance, conditional_velocity,
                                     prefix_guidance_scale, projected_guidance, rescaled_guidance,
                                     tail_guidance_scale)
from frieren_rt.flow.objective import (
    CFG_DROPOUT,
    conditional_flow_loss,
    draw_t,
    drop_condition,
    interpolate,
    logit_normal_density,
    per_sample_mse,
    rectified_flow_loss,
)
from frieren_rt.flow.reflow import ReflowPairs, reflow_loss, reflow_pairs
from frieren_rt.flow.samplers import (
    EulerStep,
    EvalCounter,
    Velocity,
    dopri5,
    draw_noise,
    euler,
    euler_trajectory,
    generate,
    time_grid,
)

__all__ = [
    "CFG_DROPOUT",
    "FRIEREN_CFG_SCALE",
    "EulerStep",
    "EvalCounter",
    "ReflowPairs",
    "Velocity",
    "cfg_velocity",
    "combine_guidance",
    "conditional_flow_loss",
    "conditional_velocity",
    "dopri5",
    "draw_noise",
    "draw_t",
    "drop_condition",
    "euler",
    "euler_trajectory",
    "generate",
    "guidance_distillation_loss",
    "guided_states",
    "interpolate",
    "logit_normal_density",
    "one_step_distillation_loss",
    "per_sample_mse",
    "prefix_guidance_scale",
    "projected_guidance",
    "rectified_flow_loss",
    "reflow_loss",
    "reflow_pairs",
    "rescaled_guidance",
    "tail_guidance_scale",
    "time_grid",
]
