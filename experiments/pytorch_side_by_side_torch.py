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
loop) and ``heun`` (EDM's ``generate.edm_sampler``, 18 steps = 35 NFE).
"""

import argparse
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
  net = networks.EDMPrecond(label_dropout=row['label_dropout'], **kwargs)
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
  if row['task'] == 'edm_step':
    net.train()
    ema = [p.detach().clone() for p in net.parameters()]
    loss_fn = edm_loss.EDMLoss(P_mean=row['p_mean'], P_std=row['p_std'],
                               sigma_data=kwargs['sigma_data'])
    optimizer = torch.optim.Adam(net.parameters(), lr=row['lr'], betas=(0.9, 0.999), eps=1e-8)
    images = torch.as_tensor(rng.uniform(-1, 1, (row['batch_size'],) + shape), dtype=torch.float32)
    labels = one_hot(rng.integers(0, label_dim, row['batch_size']))

    def run():
      optimizer.zero_grad(set_to_none=True)
      loss = loss_fn(net=net, images=images, labels=labels)
      loss.sum().mul(1 / row['batch_size']).backward()
      if row['grad_clip'] > 0:
        torch.nn.utils.clip_grad_norm_(net.parameters(), row['grad_clip'])
      optimizer.step()
      with torch.no_grad():
        for p_ema, p in zip(ema, net.parameters()):
          p_ema.copy_(p.detach().lerp(p_ema, row['ema_decay']))
  else:
    latents = torch.as_tensor(rng.normal(size=(row['batch_size'],) + shape), dtype=torch.float32)
    labels = one_hot(np.arange(row['batch_size']) % label_dim)

    def run():
      with torch.no_grad():
        generate.edm_sampler(net, latents, labels, num_steps=row['num_steps'])

  print(json.dumps({'ready': True}), file=protocol, flush=True)
  serve(run, protocol)


if __name__ == '__main__':
  main()
