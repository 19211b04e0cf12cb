"""The project's layout (docs/project-layout.md): the root holds the paper's card, the command
lines and packages; no module outside tests/ is over 500 lines; no module imports a command
line; the import graph between packages and root modules has no cycle; README's layout block
names exactly what the root holds. Read from the files themselves (ast), nothing imported."""
import ast
import collections
import os
import re

from conftest import ROOT

# The card's files and the command lines people run (docs/project-layout.md, "Root").
CARD = {'main', 'settings', 'model', 'maeb', 'dataloader', 'metrics', 'utils'}
COMMAND_LINES = {'main', 'reproduce', 'bench', 'audit', 'synthesize', 'figures'}
MAX_LINES = 500


def root_modules():
    return {name[:-3] for name in os.listdir(ROOT) if name.endswith('.py')}


def packages():
    return {name for name in os.listdir(ROOT)
            if os.path.isfile(os.path.join(ROOT, name, '__init__.py'))}


def python_files(skip=('tests',)):
    """Every .py file of the project outside ``skip``, as paths relative to the root."""
    found = []
    for folder, subfolders, names in os.walk(ROOT):
        rel = os.path.relpath(folder, ROOT)
        if rel == '.':
            subfolders[:] = [n for n in subfolders if not n.startswith(('.', '_')) and n not in
                             skip + ('checkpoints', 'data', 'docs')]
        found += [os.path.normpath(os.path.join(rel, n)) for n in names if n.endswith('.py')]
    return sorted(found)


def unit_of(path):
    """The package (top folder) or root module a file belongs to; tools/ is one unit."""
    parts = path.split(os.sep)
    return parts[0] if len(parts) > 1 else parts[0][:-3]


def imported_roots(path):
    """The top-level names a file imports, at module level and inside functions."""
    with open(os.path.join(ROOT, path)) as handle:
        tree = ast.parse(handle.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split('.')[0])
    return names


def test_the_root_holds_the_card_the_command_lines_and_packages():
    assert root_modules() == CARD | COMMAND_LINES
    code_folders = {name for name in os.listdir(ROOT)
                    if os.path.isdir(os.path.join(ROOT, name)) and not name.startswith(('.', '_'))
                    and any(n.endswith('.py') for n in os.listdir(os.path.join(ROOT, name)))}
    assert code_folders - {'tests', 'tools'} == packages(), 'code outside a package'
    for package in packages():
        with open(os.path.join(ROOT, package, '__init__.py')) as handle:
            doc = ast.get_docstring(ast.parse(handle.read()))
        assert doc and len(doc.split()) >= 20, '%s/__init__.py does not say what it owns' % package


def test_no_module_is_over_500_lines():
    long = {}
    for path in python_files():
        with open(os.path.join(ROOT, path)) as handle:
            count = sum(1 for _ in handle)
        if count > MAX_LINES:
            long[path] = count
    assert not long, 'split these along their concepts: %s' % long


def test_no_module_imports_a_command_line():
    offenders = {}
    for path in python_files(skip=('tests',)):
        found = imported_roots(path) & (COMMAND_LINES - {unit_of(path)})
        if found:
            offenders[path] = sorted(found)
    assert not offenders, 'ask the library, not another command line: %s' % offenders


def test_the_import_graph_has_no_cycle():
    """Packages and root modules as nodes, function-level imports included: a cycle would be
    an import running back up a floor of docs/project-layout.md."""
    units = root_modules() | packages()
    graph = collections.defaultdict(set)
    for path in python_files(skip=('tests', 'tools')):
        unit = unit_of(path)
        graph[unit] |= (imported_roots(path) & units) - {unit}
    assert graph['console'] == set(), 'console/ is the base floor: it imports nothing of ours'
    assert graph['machine'] <= {'console'}
    state = {}

    def visit(node, trail):
        state[node] = 'open'
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 'open', 'import cycle: %s' % ' -> '.join(trail + [nxt])
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 'done'

    for unit in sorted(units):
        if unit not in state:
            visit(unit, [unit])


def test_readme_layout_names_what_the_root_holds():
    with open(os.path.join(ROOT, 'README.md')) as handle:
        text = handle.read()
    block = re.search(r'^## Layout\n\n```\n(.*?)```', text, re.S | re.M).group(1)
    named = set()
    for line in block.splitlines():
        named.update(re.split(r' {3,}', line.strip())[0].split())   # names, then what they are
    modules = {n[:-3] for n in named if n.endswith('.py')}
    folders = {n[:-1] for n in named if n.endswith('/')}
    assert modules == root_modules()
    assert packages() <= folders
    with open(os.path.join(ROOT, 'docs', 'project-layout.md')) as handle:
        layout = handle.read()
    for package in packages():
        assert '| `%s/` |' % package in layout, 'docs/project-layout.md lacks %s/' % package
