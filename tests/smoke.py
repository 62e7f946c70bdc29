"""Two optimizer steps through a paper's real loss: the full-profile smoke tests' common core."""

import numpy as np
import torch


def two_steps(model, loss_fn, lr=1e-4):
    """Two optimizer steps of `loss_fn(generator)` (SGD: no optimizer state beside paper-size weights); the losses,
    asserted finite."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for step in range(2):
        opt.zero_grad()
        loss = loss_fn(torch.Generator().manual_seed(step))
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert all(np.isfinite(losses)), losses
    return losses
