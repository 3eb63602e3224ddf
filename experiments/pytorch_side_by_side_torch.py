"""The PyTorch side of ``experiments/pytorch_side_by_side.py``: EDM's official code, eager, fp32.

Run by the torch venv's python, never imported by fastgen:

  python pytorch_side_by_side_torch.py --edm_dir=/path/to/edm --row=ROW.json --dir=TMP

Builds ``training.networks.EDMPrecond`` with the row's EDM arguments (``edm_kwargs`` of
fastgen's network config), perturbs its weights (EDM initialises some output layers to zero,
which would make the equality check trivial), writes them to ``TMP/weights.npz`` (EDMPrecond's
state dict, names with ``model.``) and the network's output on one fixed input to ``TMP/check.npz``, then serves
the driver line by line on stdin: ``step`` runs one step of the row's task and answers
``{"seconds": ...}``; ``exit`` answers ``{"peak_rss_mib": ...}`` and ends. Tasks: ``edm_step``
(EDM's ``EDMLoss``, backward, gradient clipping as fastgen's config, Adam, EMA as EDM's training
loop), ``sid_iteration`` (SiD's fake-score update then generator update, written here from the
equations fastgen's SiD objective states; teacher, generator and fake score start from the same
weights) and ``heun`` (EDM's ``generate.edm_sampler``, 18 steps = 35 NFE).
"""

import argparse
import copy
import json
import os
import sys

import numpy as np
import torch

from pytorch_side_by_side import serve  # this directory; imports neither jax nor fastgen


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--edm_dir', required=True)
  parser.add_argument('--row', required=True)
  parser.add_argument('--dir', required=True)
  args = parser.parse_args()
  protocol = os.fdopen(os.dup(1), 'w')  # the driver's channel; prints go to stderr
  os.dup2(2, 1)
  sys.path.insert(0, args.edm_dir)
  import generate  # pylint: disable=import-outside-toplevel,import-error
  from training import loss as edm_loss, networks  # pylint: disable=import-outside-toplevel,import-error

  with open(args.row) as f:
    row = json.load(f)
  torch.set_num_threads(row['threads'])
  torch.manual_seed(row['seed'])
  kwargs = dict(row['edm_kwargs'])
  del kwargs['class_name']  # training.networks.EDMPrecond (fastgen's 'edm' parameterization)
  net = networks.EDMPrecond(label_dropout=row['objective'].get('label_dropout', 0.0), **kwargs)
  with torch.no_grad():
    for p in net.parameters():
      p.add_(0.05 * torch.randn_like(p))
  np.savez(os.path.join(args.dir, 'weights.npz'),
           **{k: v.numpy() for k, v in net.state_dict().items()})

  label_dim, channels = kwargs['label_dim'], kwargs['img_channels']
  shape = (channels, kwargs['img_resolution'], kwargs['img_resolution'])

  def one_hot(labels):
    return torch.nn.functional.one_hot(torch.as_tensor(labels).long(), label_dim).float()

  check = np.load(os.path.join(args.dir, 'check_input.npz'))
  net.eval()
  with torch.no_grad():
    out = net(torch.as_tensor(check['x']).permute(0, 3, 1, 2), torch.as_tensor(check['sigma']),
              one_hot(check['label']))
  np.savez(os.path.join(args.dir, 'check.npz'), out=out.permute(0, 2, 3, 1).numpy())

  rng = np.random.default_rng(row['seed'])
  objective, optim, batch = row['objective'], row['optim'], row['batch_size']
  sigma_data = kwargs['sigma_data']

  def optimizer_and_ema(module):
    """Adam with fastgen's config values (EDM's training loop: Adam, then the EMA update)."""
    adam = torch.optim.Adam(module.parameters(), lr=optim['lr'], betas=(optim['b1'], optim['b2']),
                            eps=optim['eps'])
    ema = [p.detach().clone() for p in module.parameters()]

    def update(loss):
      adam.zero_grad(set_to_none=True)
      loss.backward()
      if optim['grad_clip'] > 0:
        torch.nn.utils.clip_grad_norm_(module.parameters(), optim['grad_clip'])
      adam.step()
      with torch.no_grad():
        for p_ema, p in zip(ema, module.parameters()):
          p_ema.copy_(p.detach().lerp(p_ema, row['ema_decay']))
    return update

  if row['task'] == 'edm_step':
    net.train()
    loss_fn = edm_loss.EDMLoss(P_mean=objective['p_mean'], P_std=objective['p_std'],
                               sigma_data=sigma_data)
    update = optimizer_and_ema(net)
    images = torch.as_tensor(rng.uniform(-1, 1, (batch,) + shape), dtype=torch.float32)
    labels = one_hot(rng.integers(0, label_dim, batch))

    def run():
      update(loss_fn(net=net, images=images, labels=labels).sum().mul(1 / batch))
  elif row['task'] == 'sid_iteration':
    # SiD (Zhou et al. 2024) written from its equations as fastgen.objectives.sid states them
    # (not the official github.com/mingyuanzhou/SiD code): fake-score EDM loss on sg(x_g), then
    # the generator's alpha-fused loss through the frozen teacher and fake score.
    teacher, generator, fake = net.eval(), copy.deepcopy(net), copy.deepcopy(net)
    teacher.requires_grad_(False)
    update_fake, update_generator = optimizer_and_ema(fake), optimizer_and_ema(generator)
    dims = (1, 2, 3)
    rho = 7.0  # the generator loss's sigma on EDM's grid (sigma_min 0.002, sigma_max 80, rho 7)
    lo, hi = 0.002 ** (1 / rho), 80.0 ** (1 / rho)

    def generator_samples(labels):
      z = torch.randn((batch,) + shape)
      sigma_init = torch.full((batch,), objective['sigma_init'])
      return generator(objective['sigma_init'] * z, sigma_init, labels)

    def run():
      labels = one_hot(torch.randint(0, label_dim, (batch,)))
      generator.eval()
      with torch.no_grad():
        x_g = generator_samples(labels)
      fake.train()
      sigma = (torch.randn(batch) * objective['p_std'] + objective['p_mean']).exp()
      weight = (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2
      x0_hat = fake(x_g + sigma[:, None, None, None] * torch.randn_like(x_g), sigma, labels)
      update_fake((weight * ((x0_hat - x_g) ** 2).mean(dims)).mean())

      labels = one_hot(torch.randint(0, label_dim, (batch,)))
      generator.train()
      fake.eval().requires_grad_(False)
      x_g = generator_samples(labels)
      u = torch.empty(batch).uniform_(objective['u_min'], objective['u_max'])
      sigma = (lo + u * (hi - lo)) ** rho
      x_t = x_g + sigma[:, None, None, None] * torch.randn_like(x_g)
      f_real, f_fake = teacher(x_t, sigma, labels), fake(x_t, sigma, labels)
      diff = f_real - f_fake
      normaliser = (x_g - f_real).abs().mean(dims, keepdim=True).clamp(min=1e-5).detach()
      update_generator((diff * ((f_real - x_g) - objective['alpha'] * diff) / normaliser)
                       .sum(dims).mean())
      fake.requires_grad_(True)
  else:
    latents = torch.as_tensor(rng.normal(size=(batch,) + shape), dtype=torch.float32)
    labels = one_hot(np.arange(batch) % label_dim)

    def run():
      with torch.no_grad():
        generate.edm_sampler(net, latents, labels, num_steps=row['num_steps'])

  print(json.dumps({'ready': True}), file=protocol, flush=True)
  serve(run, protocol)


if __name__ == '__main__':
  main()
