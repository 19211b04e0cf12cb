"""Render the flags of ``main.py`` (``settings.build_parser()``) as Markdown: docs/flags.md.

    python tools/flags_doc.py > docs/flags.md     # print the reference
    python tools/flags_doc.py --write             # write docs/flags.md
    python tools/flags_doc.py --check             # exit 1 when docs/flags.md is out of date

One table per argument group of the parser (flag, default, help), in the parser's order, so
the reference is ``--help`` itself and cannot drift: ``tests/test_docs.py`` compares
docs/flags.md with a fresh rendering. Only ``settings`` is imported (no TensorFlow).
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

FLAGS_DOC = os.path.join(ROOT, 'docs', 'flags.md')
REGENERATE = 'python tools/flags_doc.py --write'


def _cell(text):
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return ' '.join(str(text).split()).replace('|', '\\|')


def _code(text):
    """Inline code for a table cell (pipes escaped, which GitHub renders inside code too)."""
    return '`%s`' % str(text).replace('|', '\\|')


def _value_hint(action, str2bool):
    """What the flag takes: its choices, BOOL, N (numbers), a metavar, or DEST as --help."""
    if action.nargs == 0:
        return ''
    if action.choices is not None:
        hint = '|'.join(str(c) for c in action.choices)
    elif action.type is str2bool:
        hint = 'BOOL'
    elif action.metavar is not None:
        hint = action.metavar if isinstance(action.metavar, str) else ' '.join(action.metavar)
    elif action.type in (int, float) or getattr(action.type, '__name__', '').endswith(
            ('_int', '_float')):
        hint = 'N'
    else:
        hint = action.dest.upper()      # as --help shows it
    if action.nargs == '+':
        return '%s [%s ...]' % (hint, hint)
    if action.nargs == '?':
        return '[%s]' % hint
    if action.nargs == '*':
        return '[%s ...]' % hint
    return hint


def _default(action):
    """The default as shown in the table (``none`` for None, lists space-separated)."""
    value = action.default
    if value is None or value is argparse.SUPPRESS:
        return 'none'
    if isinstance(value, (list, tuple)):
        return _code(' '.join(str(v) for v in value))
    return _code(value)


def _help(action, parser):
    """The help text with argparse's ``%(default)s``-style fields expanded."""
    text = action.help or ''
    if '%' in text:
        fields = dict(vars(action), prog=parser.prog)
        for name in list(fields):
            if fields[name] is argparse.SUPPRESS:
                del fields[name]
        if fields.get('choices') is not None:
            fields['choices'] = ', '.join(str(c) for c in fields['choices'])
        text = text % fields
    return _cell(text)


def _flag_actions(group):
    """The documented actions of ``group``: no --help, nothing suppressed."""
    return [a for a in group._group_actions
            if a.help is not argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)
            and a.option_strings]


def render(parser=None):
    """The Markdown reference of ``parser`` (default ``settings.build_parser()``).

    Args:
      parser: argparse.ArgumentParser.

    Returns:
      str, ending with one newline.
    """
    import settings
    parser = parser or settings.build_parser()
    lines = [
        '# Flags of `main.py`',
        '',
        '<!-- Generated from settings.build_parser() by tools/flags_doc.py; do not edit by '
        'hand. Regenerate with: %s -->' % REGENERATE,
        '',
        'Every flag of `python main.py --help`, one table per group, in the order of '
        '`settings.build_parser()`. Booleans (`BOOL`) take `True/False`, `1/0`, `yes/no`, '
        '`y/n` or `on/off`; a flag shown with `[BOOL]` alone means True. This page is '
        'generated: `%s` rewrites it, and `tests/test_docs.py` fails when it is out of date.'
        % REGENERATE,
        '',
    ]
    for group in parser._action_groups:
        actions = _flag_actions(group)
        if not actions:
            continue
        title = group.title or 'other'
        lines += ['## %s%s' % (title[0].upper(), title[1:]), '']
        if group.description:
            lines += [' '.join(group.description.split()), '']
        lines += ['| Flag | Default | Help |', '|---|---|---|']
        for action in actions:
            flag = ', '.join(action.option_strings)
            hint = _value_hint(action, settings.str2bool)
            lines.append('| %s | %s | %s |' % (
                _code(flag + (' ' + hint if hint else '')), _default(action),
                _help(action, parser)))
        lines.append('')
    return '\n'.join(lines).rstrip('\n') + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Render the flags of main.py (settings.build_parser) as Markdown.')
    action = parser.add_mutually_exclusive_group()
    action.add_argument('--write', action='store_true',
                        help='write %s instead of printing' % os.path.relpath(FLAGS_DOC, ROOT))
    action.add_argument('--check', action='store_true',
                        help='exit 1 when %s differs from the parser'
                             % os.path.relpath(FLAGS_DOC, ROOT))
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        os.makedirs(os.path.dirname(FLAGS_DOC), exist_ok=True)
        with open(FLAGS_DOC, 'w', encoding='utf-8', newline='\n') as handle:
            handle.write(text)
        print('wrote %s' % os.path.relpath(FLAGS_DOC))
        return 0
    if args.check:
        try:
            with open(FLAGS_DOC, encoding='utf-8') as handle:
                current = handle.read()
        except OSError:
            current = None
        if current != text:
            print('%s is out of date; run: %s' % (os.path.relpath(FLAGS_DOC), REGENERATE),
                  file=sys.stderr)
            return 1
        return 0
    if hasattr(sys.stdout, 'buffer'):
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode('utf-8'))
        sys.stdout.buffer.flush()
    else:
        sys.stdout.write(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
