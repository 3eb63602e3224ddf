"""EDM checkpoints into fastgen and back: complete loading, EDM's forward pass, safe unpickling,
bad input, the converter and exporter round trip. EDM's side comes from tests/teachers/
edm_reference.py, written from EDM's source, not from fastgen's."""

import json
import os
import pickle
import subprocess
import sys
import zipfile

import jax
import numpy as np
import pytest

from fastgen import denoiser as denoiser_lib
from fastgen import diffusion
from fastgen import teachers
from fastgen.teachers import edm_export
from fastgen.teachers import edm_import
from fastgen.teachers import torch_files
from tests.teachers import edm_reference

SMALL = dict(img_resolution=8, img_channels=3, num_blocks=1, channel_mult=[1, 2],
             attn_resolutions=[4])
# (preconditioner, EDM constructor arguments): EDM's three architectures at small sizes.
CASES = {
    'ddpmpp_cond_vp': ('VPPrecond', dict(
        SMALL, model_type='SongUNet', label_dim=3, augment_dim=9, model_channels=8, dropout=0.13,
        embedding_type='positional', channel_mult_noise=1, encoder_type='standard',
        decoder_type='standard', resample_filter=[1, 1], use_fp16=False)),
    'ncsnpp_uncond_ve': ('VEPrecond', dict(
        SMALL, model_type='SongUNet', label_dim=0, model_channels=8, embedding_type='fourier',
        channel_mult_noise=2, encoder_type='residual', decoder_type='standard',
        resample_filter=[1, 3, 3, 1])),
    # 64 channels: ADM's attention has out_channels // 64 heads (2 at the 4x4 level).
    'adm_cond_edm': ('EDMPrecond', dict(
        SMALL, model_type='DhariwalUNet', label_dim=3, model_channels=64, sigma_data=0.5)),
}


def _edm_state_dict(case, seed=0):
  precond, kwargs = CASES[case]
  model_kwargs = {k: v for k, v in kwargs.items() if k not in ('model_type', 'use_fp16',
                                                               'sigma_data', 'dropout')}
  shapes = edm_reference.state_shapes(kwargs['model_type'], **model_kwargs)
  return edm_reference.random_state_dict(shapes, seed), model_kwargs


def _network_config(case):
  precond, kwargs = CASES[case]
  return edm_import.network_config_from_edm(precond, kwargs)


def _flat(tree):
  return {jax.tree_util.keystr(p): np.asarray(v)
          for p, v in jax.tree.leaves_with_path(tree)}


def _assert_same_tree(a, b):
  a, b = _flat(a), _flat(b)
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize('case', list(CASES))
def test_edm_state_dict_loads_completely(case):
  """Every EDM tensor fills exactly one Flax parameter (or is a checked buffer / dropped
  augmentation weight), every Flax parameter is filled, and exporting gives the tensors back."""
  state_dict, _ = _edm_state_dict(case)
  cfg = _network_config(case)
  params, dropped = edm_import.params_from_edm(
      {f'model.{k}': v for k, v in state_dict.items()}, cfg)
  shapes = edm_import.param_shapes(cfg)
  assert jax.tree.structure(params) == jax.tree.structure(shapes)
  assert dropped == (['map_augment.weight'] if 'map_augment.weight' in state_dict else [])
  exported = edm_import.params_to_edm(params, cfg, prefix='')
  assert set(exported) == set(state_dict) - set(dropped)
  buffers = [n for n in exported if n.endswith('resample_filter')]
  label_bias = ['map_label.bias'] if cfg['name'] == 'unet' and cfg['num_classes'] else []
  assert len(jax.tree.leaves(params)) == len(exported) - len(buffers) - len(label_bias)
  for name, value in exported.items():
    if name in ('map_label.bias', 'map_layer0.bias') and label_bias:
      continue
    np.testing.assert_array_equal(value, state_dict[name], err_msg=name)
  if label_bias:  # folded: W0 (e + W_l y + b_l) + b0 = W0 (e + W_l y) + (b0 + W0 b_l)
    np.testing.assert_allclose(
        exported['map_layer0.bias'],
        state_dict['map_layer0.bias'] + state_dict['map_layer0.weight'] @ state_dict[
            'map_label.bias'], rtol=1e-6)
    np.testing.assert_array_equal(exported['map_label.bias'], 0.0)


@pytest.mark.parametrize('case', list(CASES))
def test_imported_denoiser_equals_edm_forward(case):
  """D(x, sigma, label) of the imported net equals EDM's preconditioned forward pass computed in
  numpy (float64) from the same state dict, for a class and the null label."""
  precond, kwargs = CASES[case]
  state_dict, model_kwargs = _edm_state_dict(case)
  cfg = _network_config(case)
  params, _ = edm_import.params_from_edm(state_dict, cfg)
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
  sigma = np.array([0.4, 3.0], np.float32)
  num_classes = cfg['num_classes']
  labels = np.array([1, num_classes]) if num_classes else None  # a class and the null label
  onehot = np.eye(num_classes + 1)[labels][:, :num_classes] if num_classes else None
  expected = edm_reference.denoise(
      state_dict, precond, kwargs['model_type'], x.transpose(0, 3, 1, 2).astype(np.float64),
      sigma.astype(np.float64), onehot, **model_kwargs).transpose(0, 2, 3, 1)
  actual = jax.jit(denoiser_lib.from_config(cfg).__call__)(params, x, sigma, labels)
  residual = expected - x  # compare the network's contribution, not the skip connection
  np.testing.assert_allclose(np.asarray(actual) - x, residual, rtol=1e-4,
                             atol=1e-4 * np.abs(residual).max())


def test_vp_noise_map_inverts_vp_sigma():
  t = np.linspace(1e-3, 1.0, 7)
  np.testing.assert_allclose(diffusion.vp_sigma_inv(diffusion.vp_sigma(t)), t, rtol=1e-5)


def test_network_pickle_imports_without_running_its_code(tmp_path):
  """An EDM training snapshot (persistence objects whose module_src would raise if executed,
  storages as legacy torch.save bytes) gives the architecture and the same params as its state
  dict."""
  state_dict, _ = _edm_state_dict('ddpmpp_cond_vp')
  precond, kwargs = CASES['ddpmpp_cond_vp']
  path = str(tmp_path / 'network-snapshot.pkl')
  edm_reference.write_network_pickle(path, {f'model.{k}': v for k, v in state_dict.items()},
                                     precond, kwargs)
  cfg, params, dropped = edm_import.read_edm(path)
  assert cfg == _network_config('ddpmpp_cond_vp')
  assert cfg['parameterization'] == 'vp' and cfg['num_classes'] == 3
  assert dropped == ['map_augment.weight']
  _assert_same_tree(params, edm_import.params_from_edm(state_dict, cfg)[0])


class _Evil:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f'touch {self.marker}',)


def test_malicious_pickle_is_refused_without_running_it(tmp_path):
  marker = tmp_path / 'pwned'
  path = tmp_path / 'evil.pkl'
  path.write_bytes(pickle.dumps({'ema': _Evil(marker)}))
  with pytest.raises(torch_files.UnsafePickleError, match=r'refusing to load (posix|os)\.system'):
    torch_files.load(str(path))
  # Through the converter: one error line, exit status 1, nothing written.
  out = tmp_path / 'teacher'
  proc = subprocess.run(
      [sys.executable, '-m', 'fastgen.teachers.edm_import', str(path), f'--workdir={out}'],
      capture_output=True, text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(
          os.path.dirname(os.path.abspath(__file__)))))
  assert proc.returncode == 1, proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith('fastgen: error: refusing to load')
  assert not marker.exists() and not out.exists()
  assert not list(tmp_path.glob('teacher*'))


def test_bad_input_names_the_keys(tmp_path):
  state_dict, _ = _edm_state_dict('ddpmpp_cond_vp')
  cfg = _network_config('ddpmpp_cond_vp')
  broken = dict(state_dict)
  del broken['enc.8x8_block0.conv0.bias']
  broken['enc.8x8_block0.gain'] = np.ones(3, np.float32)
  with pytest.raises(edm_import.EDMImportError,
                     match=r'missing enc\.8x8_block0\.conv0\.bias; unexpected '
                           r'enc\.8x8_block0\.gain'):
    edm_import.params_from_edm(broken, cfg)
  with pytest.raises(edm_import.EDMImportError, match=r'map_layer0\.weight \(32, 16\)'):
    edm_import.params_from_edm({**state_dict, 'map_layer0.weight': np.zeros((32, 16))}, cfg)
  # A 16x16 checkpoint for an 8x8 config: the resolution-named modules differ.
  with pytest.raises(edm_import.EDMImportError, match=r'state dict is for img_resolution 16 .*'
                                                      r'this config for img_resolution 8'):
    edm_import.params_from_edm({k.replace('8x8', '16x16').replace('4x4', '8x8'): v
                                for k, v in state_dict.items()}, cfg)
  with pytest.raises(edm_import.EDMImportError, match=r"unknown EDM network class 'iDDPMPrecond'"):
    edm_import.network_config_from_edm('iDDPMPrecond', CASES['adm_cond_edm'][1])
  with pytest.raises(edm_import.EDMImportError, match=r'argument\(s\) use_xformers are unknown'):
    edm_import.network_config_from_edm('EDMPrecond', {**CASES['adm_cond_edm'][1],
                                                      'use_xformers': True})
  # A pickle that does not match the config it is converted for.
  path = str(tmp_path / 'snapshot.pkl')
  edm_reference.write_network_pickle(path, {f'model.{k}': v for k, v in state_dict.items()},
                                     *CASES['ddpmpp_cond_vp'])
  with pytest.raises(edm_import.EDMImportError, match=r'img_resolution 8 in the checkpoint, 16 in '
                                                      r'the config'):
    edm_import.read_edm(path, {**cfg, 'img_resolution': 16})


def test_converted_teacher_workdir_and_export_round_trip(tmp_path):
  """pickle -> fastgen workdir -> teacher (same params); export -> torch.save zip + kwargs ->
  import gives the params back exactly."""
  state_dict, _ = _edm_state_dict('ncsnpp_uncond_ve')
  precond, kwargs = CASES['ncsnpp_uncond_ve']
  pkl = str(tmp_path / 'snapshot.pkl')
  edm_reference.write_network_pickle(pkl, {f'model.{k}': v for k, v in state_dict.items()},
                                     precond, kwargs)
  workdir = str(tmp_path / 'teacher')
  cfg = edm_import.import_to_workdir(pkl, workdir)
  model, params = teachers.checkpoint_teacher(workdir)
  assert model.parameterization == 've' and model.net.embedding_type == 'fourier'
  expected = edm_import.params_from_edm(state_dict, cfg)[0]
  _assert_same_tree(params, expected)
  with pytest.raises(edm_import.EDMImportError, match='exists and is not empty'):
    edm_import.import_to_workdir(pkl, workdir)

  out = str(tmp_path / 'student.pt')
  assert edm_export.export(workdir, out) == 'denoiser'
  with open(out + '.json') as f:
    exported_kwargs = json.load(f)
  assert exported_kwargs['class_name'] == 'training.networks.VEPrecond'
  assert edm_import.network_config_from_edm('VEPrecond', {
      k: v for k, v in exported_kwargs.items() if k != 'class_name'}) == cfg
  _, reimported, _ = edm_import.read_edm(out, cfg)
  _assert_same_tree(reimported, expected)
  edm_export.export(workdir, str(tmp_path / 'student.npz'))
  _, reimported, _ = edm_import.read_edm(str(tmp_path / 'student.npz'), cfg)
  _assert_same_tree(reimported, expected)
  assert not [p for p in os.listdir(tmp_path) if 'partial' in p]


def test_torch_zip_records_are_aligned_and_typed(tmp_path):
  arrays = {'a': np.arange(6, dtype=np.float32).reshape(2, 3).T, 'b': np.ones(3, np.float16),
            'c': np.array([2**40], np.int64), 'd': np.array(1.5, jax.numpy.bfloat16)}
  path = str(tmp_path / 'x.pt')
  torch_files.save_torch_zip(path, arrays)
  loaded = torch_files.load(path)
  assert list(loaded) == list(arrays)
  for k, v in arrays.items():
    assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape
    np.testing.assert_array_equal(loaded[k], v)
  with zipfile.ZipFile(path) as archive:
    for info in archive.infolist():  # PyTorch memory-maps records at 64-byte boundaries
      assert (info.header_offset + 30 + len(info.filename) + len(info.extra)) % 64 == 0


def test_released_edm_networks_have_edm_names_and_shapes():
  """At full size (shapes only): the networks of edm-cifar10-32x32-cond-vp (DDPM++),
  edm-cifar10-32x32-uncond-ve (NCSN++) and edm-imagenet-64x64-cond-adm, with their constructor
  arguments from EDM's train.py, have exactly EDM's tensors; ADM has EDM's 295.90M parameters."""
  ddpmpp = dict(embedding_type='positional', channel_mult_noise=1, encoder_type='standard',
                resample_filter=[1, 1])
  ncsnpp = dict(embedding_type='fourier', channel_mult_noise=2, encoder_type='residual',
                resample_filter=[1, 3, 3, 1])
  cifar = dict(model_type='SongUNet', img_resolution=32, img_channels=3, augment_dim=9,
               model_channels=128, channel_mult=[2, 2, 2], decoder_type='standard')
  released = [dict(cifar, label_dim=10, **ddpmpp), dict(cifar, label_dim=0, **ncsnpp),
              dict(model_type='DhariwalUNet', img_resolution=64, img_channels=3, label_dim=1000,
                   model_channels=192, channel_mult=[1, 2, 3, 4])]
  for kwargs in released:
    cfg = edm_import.network_config_from_edm('EDMPrecond', kwargs)
    shapes = edm_import.param_shapes(cfg)
    zeros = jax.tree.map(lambda s: np.broadcast_to(np.float32(0), s.shape), shapes)
    ours = {k: v.shape for k, v in edm_import.params_to_edm(zeros, cfg, prefix='').items()}
    edm = edm_reference.state_shapes(**{k: v for k, v in kwargs.items()
                                        if k not in ('decoder_type',)})
    edm = {k: np.shape(v) if isinstance(v, np.ndarray) else v for k, v in edm.items()
           if k != 'map_augment.weight'}
    assert ours == edm
    if kwargs['model_type'] == 'DhariwalUNet':
      assert sum(int(np.prod(s)) for k, s in ours.items()
                 if not k.endswith('resample_filter')) == 295_899_267


@pytest.mark.slow
def test_full_size_cifar_pickle_matches_edm_forward_and_seeds_sid(tmp_path):
  """edm-cifar10-32x32-cond-vp's architecture at full size (55.7M parameters, random weights):
  pickle -> converter with the sid_cifar config -> teacher equals EDM's numpy forward, and SiD
  starts from it. About 2 minutes on 2 CPU cores."""
  from fastgen import configs
  from fastgen import objectives
  kwargs = dict(model_type='SongUNet', img_resolution=32, img_channels=3, label_dim=10,
                augment_dim=9, model_channels=128, channel_mult=[2, 2, 2], dropout=0.13,
                embedding_type='positional', channel_mult_noise=1, encoder_type='standard',
                decoder_type='standard', resample_filter=[1, 1], use_fp16=False)
  model_kwargs = {k: v for k, v in kwargs.items()
                  if k not in ('model_type', 'dropout', 'decoder_type', 'use_fp16')}
  state_dict = edm_reference.random_state_dict(edm_reference.state_shapes('SongUNet',
                                                                          **model_kwargs))
  pkl = str(tmp_path / 'edm-cifar10-32x32-cond-vp-like.pkl')
  edm_reference.write_network_pickle(pkl, {f'model.{k}': v for k, v in state_dict.items()},
                                     'EDMPrecond', kwargs)
  config = configs.get_config('sid_cifar')
  config.teacher.workdir = str(tmp_path / 'teacher')
  edm_import.import_to_workdir(pkl, config.teacher.workdir, config)
  model, params = teachers.load_teacher(config.teacher)
  init = objectives.make_objective(config, model).init(
      jax.random.key(0), {'x': np.zeros((1, 32, 32, 3), np.float32),
                          'label': np.zeros((1,), np.int32)}, params)
  _assert_same_tree(init['generator'], params)
  x = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype(np.float32)
  sigma = np.array([1.3], np.float32)
  actual = np.asarray(jax.jit(model.__call__)(params, x, sigma, np.array([3])))
  expected = edm_reference.denoise(
      state_dict, 'EDMPrecond', 'SongUNet', x.transpose(0, 3, 1, 2).astype(np.float64),
      sigma.astype(np.float64), np.eye(10)[[3]], **model_kwargs).transpose(0, 2, 3, 1)
  residual = expected - x
  np.testing.assert_allclose(actual - x, residual, rtol=1e-4, atol=1e-4 * np.abs(residual).max())
