"""Training: resumable loops, checkpoints and loss logs shared by the VAE, flow, reflow and distill stages."""
