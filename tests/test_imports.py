"""Imports inside the package run one way: no module reaches itself through fastgen imports.

Read with ``ast`` (nothing is imported, so no jax), counting every ``import`` statement of a
module wherever it is: at module level, under ``if __name__ == '__main__'`` or inside a function,
so an import moved into a function to dodge a cycle still counts.
"""

import ast
import os

PACKAGE = 'fastgen'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def package_modules(root: str = ROOT) -> dict[str, str]:
  """``{dotted module name: path}`` of every ``.py`` file of the package."""
  modules = {}
  for directory, _, files in os.walk(os.path.join(root, PACKAGE)):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(directory, name)
        parts = os.path.relpath(path, root)[:-3].split(os.sep)
        modules['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
  return modules


def imported_modules(path: str, module: str, modules) -> set[str]:
  """The package modules that ``module`` (at ``path``) imports anywhere in its source.

  ``from a import b`` imports module ``a.b`` if it exists, else (``b`` a name in ``a``) ``a``.
  """
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  is_package = path.endswith('__init__.py')
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:  # relative: resolved against this module's package
        anchor = module.split('.')[:len(module.split('.')) - node.level + is_package]
        base = '.'.join(anchor + ([base] if base else []))
      for alias in node.names:
        found.add(f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else base)
  return {name for name in found if name in modules and name != module}


def import_graph(root: str = ROOT) -> dict[str, set[str]]:
  modules = package_modules(root)
  return {name: imported_modules(path, name, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One cycle ``[a, b, ..., a]`` of ``graph`` (depth-first search), or None."""
  state = {}  # module -> 'open' (on the current path) or 'done'
  path = []

  def visit(node):
    state[node] = 'open'
    path.append(node)
    for successor in sorted(graph[node]):
      if state.get(successor) == 'open':
        return path[path.index(successor):] + [successor]
      if successor not in state:
        cycle = visit(successor)
        if cycle:
          return cycle
    path.pop()
    state[node] = 'done'
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def test_the_graph_sees_module_and_function_level_imports(tmp_path):
  package = tmp_path / PACKAGE
  (package / 'sub').mkdir(parents=True)
  (package / '__init__.py').write_text('')
  (package / 'a.py').write_text('from fastgen import b\n')
  (package / 'b.py').write_text('def f():\n  from fastgen.sub import c\n')
  (package / 'sub' / '__init__.py').write_text('from fastgen.sub.c import NAME\n')
  (package / 'sub' / 'c.py').write_text('import fastgen.a\nNAME = 1\n')
  graph = import_graph(str(tmp_path))
  assert graph['fastgen.b'] == {'fastgen.sub.c'}
  assert graph['fastgen.sub'] == {'fastgen.sub.c'}
  assert find_cycle(graph) == ['fastgen.a', 'fastgen.b', 'fastgen.sub.c', 'fastgen.a']
  (package / 'sub' / 'c.py').write_text('NAME = 1\n')
  assert find_cycle(import_graph(str(tmp_path))) is None


def test_the_package_has_no_import_cycle():
  graph = import_graph()
  assert len(graph) > 40 and graph['fastgen.train'], sorted(graph)  # the walk found the package
  cycle = find_cycle(graph)
  assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)
