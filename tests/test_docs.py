"""The documentation: README.md as the front door, docs/*.md, the generated flags reference.

No TensorFlow: only ``settings`` (through tools/flags_doc.py) is imported.
"""
import ast
import glob
import importlib.util
import os
import re

from conftest import ROOT

README = os.path.join(ROOT, 'README.md')
DOCS = os.path.join(ROOT, 'docs')
FLAGS_DOC = os.path.join(DOCS, 'flags.md')
README_LIMIT = 12 * 1024          # bytes (STYLE.md point 13: the rest lives in docs/)
INSTALL = 'pip install -r requirements.txt && '

_FENCE = re.compile(r'^\s*(```|~~~)')
_INLINE_CODE = re.compile(r'`[^`\n]*`')
_LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
_REFERENCE = re.compile(r'^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$')
_SCHEME = re.compile(r'^[a-zA-Z][a-zA-Z0-9+.-]*:')


def _read(path):
    with open(path, encoding='utf-8') as handle:
        return handle.read()


def _load_flags_doc():
    path = os.path.join(ROOT, 'tools', 'flags_doc.py')
    spec = importlib.util.spec_from_file_location('flags_doc', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _markdown_files():
    return [README] + sorted(glob.glob(os.path.join(DOCS, '*.md')))


def _prose_lines(text):
    """(line number, line) outside fenced code blocks."""
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            yield number, line


def _links(text):
    """(line number, target) of every Markdown link outside code."""
    for number, line in _prose_lines(text):
        reference = _REFERENCE.match(line)
        if reference:
            yield number, reference.group(1)
            continue
        for match in _LINK.finditer(_INLINE_CODE.sub('', line)):
            yield number, match.group(1)


def _slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r'<[^>]+>', '', heading).strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def _anchors(path):
    anchors, seen = set(), {}
    for _, line in _prose_lines(_read(path)):
        match = re.match(r'^#{1,6}\s+(.*?)\s*#*\s*$', line)
        if match:
            slug = _slug(match.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else '%s-%d' % (slug, count))
    anchors.update(re.findall(r'<a\s+(?:name|id)="([^"]+)"', _read(path)))
    return anchors


def _first_code_block(text):
    lines, inside = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            if inside:
                return lines
            inside = True
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


def _demo_regex():
    """The pattern tests/test_demo.py uses to find the README's first command."""
    tree = ast.parse(_read(os.path.join(ROOT, 'tests', 'test_demo.py')))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == 'search' and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str) and 'requirements' in node.args[0].value):
            return node.args[0].value
    raise AssertionError('tests/test_demo.py no longer finds the README command with re.search')


def _ci_commands():
    """(pip install line, default-tier test command, slow-tier test command) of .ci/run, the
    test commands spelled with python."""
    lines = [line.strip() for line in _read(os.path.join(ROOT, '.ci', 'run')).splitlines()
             if line.strip() and not line.strip().startswith('#')]
    install = [line for line in lines if 'pip install' in line]
    tests = [line for line in lines if '-m pytest' in line]
    assert len(install) == 1 and len(tests) == 2, lines

    def spelled(line):
        words = line.split()
        return ' '.join(['python' if words[0] == 'python3' else words[0]] + words[1:])
    return install[0], spelled(tests[0]), spelled(tests[1])


# ----------------------------------------------------------------------------- tests
def test_flags_doc_is_generated_from_the_parser():
    expected = _load_flags_doc().render()
    current = _read(FLAGS_DOC) if os.path.isfile(FLAGS_DOC) else None
    assert current == expected, (
        'docs/flags.md is out of date with settings.build_parser(); regenerate it with: '
        'python tools/flags_doc.py --write')


def test_flags_doc_lists_every_flag():
    import settings
    text = _read(FLAGS_DOC)
    for action in settings.build_parser()._actions:
        for option in action.option_strings:
            if option not in ('-h', '--help'):
                assert '`%s' % option in text, option


def test_readme_is_the_front_door():
    size = os.path.getsize(README)
    assert size <= README_LIMIT, (
        'README.md is %d bytes (limit %d): move details into docs/*.md' % (size, README_LIMIT))
    text = _read(README)
    for heading in ('## Shipped models', "## The paper's results"):
        assert heading in text
    assert '(docs/README.md)' in text
    # The flags reference is generated (docs/flags.md), never copied into the README.
    assert not re.search(r'^\|\s*`--\w+', text, re.M), 'README.md has a hand-copied flag table'


def test_readme_first_commands_are_the_demo_and_ci_commands():
    text = _read(README)
    lines = _first_code_block(text)
    assert len(lines) >= 2 and all(line.startswith(INSTALL) for line in lines[:2]), lines[:2]
    # The first command is the one tests/test_demo.py finds and runs.
    match = re.search(_demo_regex(), text)
    assert match and match.group(0) == lines[0], (match and match.group(0), lines[0])
    assert '--is_testing' in lines[0].split()
    # The second is exactly what CI runs first (the default tier); CI then runs the slow
    # tier, which the README names beside it.
    install, tests, slow = _ci_commands()
    assert '-r requirements.txt' in install
    assert lines[1] == INSTALL + tests, (lines[1], tests)
    assert slow == tests + ' -m slow' and '`%s`' % slow in text, slow


def test_every_relative_link_points_to_an_existing_file():
    broken = []
    for path in _markdown_files():
        for number, target in _links(_read(path)):
            if _SCHEME.match(target):
                continue
            name, _, anchor = target.partition('#')
            where = os.path.normpath(os.path.join(os.path.dirname(path), name)) if name else path
            label = '%s:%d: %s' % (os.path.relpath(path, ROOT), number, target)
            if not os.path.exists(where):
                broken.append(label + ' (no such file)')
            elif anchor and where.endswith('.md') and anchor not in _anchors(where):
                broken.append(label + ' (no such heading)')
    assert not broken, 'broken links:\n' + '\n'.join(broken)


def test_docs_contents_page_lists_every_page():
    listed = {target.partition('#')[0] for _, target in _links(_read(os.path.join(DOCS,
                                                                                 'README.md')))}
    pages = {os.path.basename(p) for p in glob.glob(os.path.join(DOCS, '*.md'))} - {'README.md'}
    assert pages <= listed, 'docs/README.md does not list: %s' % sorted(pages - listed)
