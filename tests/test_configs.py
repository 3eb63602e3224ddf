"""fastgen.configs: every packaged config builds its network and objective, the names of the docs
resolve to the rule files from any directory, and the EDM network presets are what the EDM
importer reads from EDM's constructor arguments."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from fastgen import configs, networks, objectives, teachers
from fastgen import denoiser as denoiser_lib
from fastgen.configs import data_presets
from fastgen.configs import networks as network_presets
from fastgen.networks import lpips
from fastgen.objectives import reflow
from fastgen.teachers import edm_import
from tests.networks import lpips_stand_in

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Run options of a network that are not part of its architecture.
RUN_OPTIONS = ('out_channels', 'dtype', 'remat')


def _stand_in_teacher(config):
  """The teacher model a config's rule is built with, without a checkpoint: the closed-form
  mixture, nothing, or (for a checkpoint) a network of the config's own architecture."""
  if config.teacher.kind == 'analytic':
    return teachers.analytic_teacher(config.teacher.mixture,
                                     conditional=config.teacher.get('conditional', False))[0]
  if config.teacher.kind == 'checkpoint':
    return denoiser_lib.from_config(config.network)
  return None


def test_every_rule_file_is_found():
  assert set(configs.rule_modules()) == {
      'cd', 'ct', 'dmd', 'dmd2', 'ect', 'edm', 'flow', 'guided', 'instaflow', 'ladd', 'meanflow',
      'pd', 'reflow', 'scd', 'sct', 'sid', 'sida', 'sim', 'slimflow', 'tcm', 'uni_instruct'}
  assert len(configs.names()) == len(set(configs.names())) == 74


@pytest.mark.parametrize('name', configs.names())
def test_every_config_builds_its_network_and_objective(name, tmp_path, monkeypatch):
  config = configs.get_config(name)
  if config.objective.get('metric') in reflow.PERCEPTUAL:  # as if fetched: stand-in weights
    monkeypatch.setenv('FASTGEN_CACHE', str(tmp_path))
    lpips_stand_in.write_weights(str(tmp_path / lpips.CACHED_FILE))
  rule, data = name.partition(':')[0].rsplit('_', 1)
  assert data in data_presets.DATA_SETS and config.objective.name
  networks.build_network({k: v for k, v in config.network.items()
                          if k not in ('parameterization', 'sigma_data')})
  objective = objectives.make_objective(config, _stand_in_teacher(config))
  assert objective.groups
  if config.data.name == 'couplings':
    assert config.data.batch_size == config.data.source.batch_size
  # One name per idea: the objectives' former key names appear in no packaged config.
  assert not {'sigma_gen', 'tmax', 'premetric'} & set(config.objective), rule


@pytest.mark.parametrize('name', ['sid_cifar', 'sid:cifar', 'configs/sid_cifar.py',
                                  './configs/sid_cifar.py'])
def test_the_forms_of_a_name_give_one_config(name):
  assert configs.get_config(name).to_dict() == configs.rule_modules()['sid'].get_config(
      'cifar').to_dict()


def test_a_variant_follows_the_name():
  baseline = configs.rule_modules()['slimflow'].get_config('gmm2d:one_step_regression')
  assert baseline.objective.name == 'instaflow'
  for name in ('slimflow_gmm2d:one_step_regression', 'slimflow:gmm2d:one_step_regression',
               'configs/slimflow_gmm2d.py:one_step_regression'):
    assert configs.get_config(name).to_dict() == baseline.to_dict()
  assert configs.get_config('slimflow_gmm2d').objective.name == 'slimflow'


@pytest.mark.parametrize('name', ['sid_foo', 'nope', 'configs/sid_foo.py', 'sid_cifar:nope',
                                  'flow_gmm2d', 'sid:'])
def test_an_unknown_name_lists_the_known_configs(name):
  with pytest.raises(configs.UnknownConfigError, match=r'known: cd_\{gmm2d,digits,cifar\}.*'
                     r'slimflow_\{gmm2d,digits,cifar\}\[:one_step_regression\]'):
    configs.get_config(name)


def test_config_flag_values(tmp_path):
  own = tmp_path / 'configs' / 'sid_cifar.py'  # a user's file wins over the packaged name
  own.parent.mkdir()
  own.write_text('def get_config(arg=None):\n  return None\n')
  assert configs.config_file_flag(f'{own}:x') == f'{own}:x'
  sid_file = configs.rule_modules()['sid'].__file__
  assert configs.config_file_flag('configs/sid_cifar.py') == f'{sid_file}:cifar'
  assert configs.config_file_flag('elsewhere/x.py') == 'elsewhere/x.py'  # the flag's own error
  assert configs.resolve_config_flag(['main', '--config', 'sid:gmm2d', '--config.seed=1']) == [
      'main', '--config', f'{sid_file}:gmm2d', '--config.seed=1']


def _cli(args, cwd):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1',
             TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=REPO)
  return subprocess.run([sys.executable, '-m', *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=300)


def test_cli_trains_a_packaged_config_from_another_directory(tmp_path):
  overrides = ['--config.train.num_steps=2', '--config.train.checkpoint_every=2',
               '--config.train.sample_every=0', '--config.eval.every=0',
               '--config.data.batch_size=64', '--config.network.hidden=16',
               '--config.network.depth=1']
  proc = _cli(['fastgen.main', '--config=configs/edm_gmm2d.py', '--workdir=run', *overrides],
              cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  expected = configs.get_config('edm_gmm2d')
  expected.update_from_flattened_dict({a.split('=')[0][len('--config.'):]: int(a.split('=')[1])
                                       for a in overrides})
  with open(tmp_path / 'run' / 'config.json') as f:
    assert json.load(f) == json.loads(expected.to_json_best_effort())


def test_cli_names_a_bad_config_in_one_line(tmp_path):
  proc = _cli(['fastgen.main', '--config=configs/sid_foo.py', '--workdir=run'], cwd=tmp_path)
  assert proc.returncode == 1 and proc.stderr.count('\n') == 1, proc.stderr
  assert proc.stderr.startswith("fastgen: error: unknown config 'configs/sid_foo.py'; known: ")


def test_edm_import_takes_a_config_name_from_another_directory(tmp_path):
  proc = _cli(['fastgen.teachers.edm_import', 'missing.pkl', '--config=configs/sid_cifar.py',
               '--workdir=out'], cwd=tmp_path)
  assert proc.returncode == 1 and 'fastgen: error:' in proc.stderr, proc.stderr[-3000:]
  assert 'missing.pkl' in proc.stderr and 'config' not in proc.stderr.split('error:')[1]


_EDM_KWARGS = {  # EDM train.py's network arguments (--arch, --cond; ImageNet: label_dim 1000)
    'ddpmpp': dict(model_type='SongUNet', img_resolution=32, img_channels=3, label_dim=10,
                   model_channels=128, channel_mult=[2, 2, 2], dropout=0.13,
                   embedding_type='positional', encoder_type='standard', decoder_type='standard',
                   channel_mult_noise=1, resample_filter=[1, 1]),
    'ncsnpp': dict(model_type='SongUNet', img_resolution=32, img_channels=3, label_dim=10,
                   model_channels=128, channel_mult=[2, 2, 2], dropout=0.13,
                   embedding_type='fourier', encoder_type='residual', decoder_type='standard',
                   channel_mult_noise=2, resample_filter=[1, 3, 3, 1]),
    'adm': dict(model_type='DhariwalUNet', img_resolution=64, img_channels=3, label_dim=1000,
                model_channels=192, channel_mult=[1, 2, 3, 4], dropout=0.10),
}


@pytest.mark.parametrize('arch', sorted(_EDM_KWARGS))
def test_network_presets_are_what_the_importer_reads_from_edm(arch):
  kwargs = _EDM_KWARGS[arch]
  preset = getattr(network_presets, arch)(kwargs['img_resolution'], kwargs['img_channels'],
                                          kwargs['label_dim'])
  assert preset.to_dict() == edm_import.network_config_from_edm('EDMPrecond', kwargs)
  cls = networks.NETWORKS[preset.name]
  arguments = {f.name for f in dataclasses.fields(cls) if f.init} - {'parent', 'name'}
  # Every architecture argument explicit, but for fastgen's options beyond EDM's (off in EDM).
  assert arguments - set(RUN_OPTIONS) - {'double_norm'} <= set(preset)


def test_the_cifar_and_imagenet_configs_use_the_ddpmpp_and_adm_presets():
  assert configs.get_config('edm_cifar').network.to_dict() == network_presets.ddpmpp(
      32, 3, 10).to_dict()
  assert configs.get_config('edm_imagenet64').network.to_dict() == network_presets.adm(
      64, 3, 1000).to_dict()
