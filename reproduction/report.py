"""``REPRODUCTION.md`` and ``REPRODUCTION.json``: our numbers beside the paper's.

``build_report`` collects the rows (per dataset: both protocols, the paper's value, the
difference, the checkpoint's iterations and schedule, what did not run and why),
``render_markdown`` writes them as the table people read and ``write_report`` saves both
files. ``PROTOCOLS`` names the two ways PSNR/SSIM are measured (docs/evaluation.md).
"""
import datetime
import json
import os

from reproduction import paper
from reproduction.plan import _relative


PROTOCOLS = (
    ('paper', 'psnr', 'ssim',
     'paper protocol: BGR channels in [0, 1], Gaussian SSIM (11x11, sigma 1.5, VALID)'),
    ('Y', 'psnr_y', 'ssim_y',
     'Y protocol: BT.601 luma of the uint8 images (PReNet/MPRNet/Restormer); no paper value'),
)


# ----------------------------------------------------------------------------- report
def _pair(psnr, ssim, digits=3):
    return '%.2f/%.*f' % (psnr, digits, ssim)


def _diff(values):
    return '%+.2f/%+.4f' % (values['psnr'], values['ssim'])


def _code(text):
    return '`%s`' % text


def _checkpoint_cell(row):
    if not row['checkpoint']:
        return '—'
    training = row.get('training')
    if training:
        text = '{:,} iterations'.format(training['iterations'])
        if training['schedule']:
            text += '; ' + training['schedule']
    else:
        step = row['checkpoint_step']
        text = 'step %d' % step if step is not None else 'no step stored'
    return '%s (%s)' % (_code(row['checkpoint']), text)


def _pairs_cell(row):
    if row['test_pairs'] is None:
        return '—'
    text = '%d' % row['test_pairs']
    if row['test_set'] == 'validation':
        text += ' validation'
    if row['paper_test_pairs'] is not None:
        text += ' (paper %d)' % row['paper_test_pairs']
        if row['test_pairs'] != row['paper_test_pairs']:
            text += ' ⚠'
    return text


def _rain100h_note(rows):
    row = next((r for r in rows if r['dataset'] == 'Rain100H'), None)
    text = ('**Rain100H training set.** 546 of Rain100H\'s 1,800 training images share their '
            'backgrounds with its test images; PReNet and later papers train on the other '
            '1,254 ("RainTrainH"). The ReMAEN README lists 1,800. ')
    if row is None or row['status'] != 'ok':
        return text + 'Rain100H was not run here.'
    count = row.get('train_pairs')
    if count is None:
        return text + ('The checkpoint used does not record its training-set size: state '
                       'which set it was trained on when quoting this number.')
    return text + 'The checkpoint used was trained on %d pairs: %s.' % (
        count, paper.RAIN100H_TRAIN_SIZES.get(count, 'neither of the usual sets'))


def render_markdown(report):
    """REPRODUCTION.md text from the report dict (see ``build_report``)."""
    rows = report['datasets']
    names = [r['dataset'] for r in rows]
    lines = ['# ReMAEN: reproduction of the paper\'s table', '',
             'Generated %s by `%s`.' % (report['generated'], report['command']), '',
             'Our numbers come from `main.py`\'s test code (`inference.derain_pairs`): whole '
             'test images in one pass, output clipped to [0, 1] and saved as 8-bit PNG (rounded), '
             'paper-protocol metrics on the float output, Y-protocol metrics on the saved uint8 '
             'images. Paper values: `paper.PAPER_TABLE` (SPEC.md).', '',
             '## Paper table with this reproduction (PSNR/SSIM, paper protocol)', '',
             '| Method | ' + ' | '.join(names) + ' |',
             '|---|' + '---|' * len(names)]
    for method, values in paper.PAPER_TABLE.items():
        cells = [_pair(*values[n]) if n in values else '—' for n in names]
        lines.append('| %s | %s |' % (method, ' | '.join(cells)))
    ours, diffs = [], []
    for row in rows:
        if row['status'] == 'ok':
            ours.append('**%s**%s' % (_pair(row['ours']['psnr'], row['ours']['ssim'], 4),
                                      ' (validation)' if row['test_set'] == 'validation'
                                      else ''))
            diffs.append(_diff(row['difference']) if row['difference'] else 'no paper value')
        else:
            ours.append('not run')
            diffs.append('—')
    lines += ['| **ReMAEN, this reproduction** | %s |' % ' | '.join(ours),
              '| Difference (ours − paper) | %s |' % ' | '.join(diffs), '',
              '## Per dataset and protocol', '',
              '| Dataset | Protocol | Paper PSNR/SSIM | Ours PSNR/SSIM | Difference | '
              'Test pairs found | Checkpoint | Date |',
              '|---|---|---|---|---|---|---|---|']
    for row in rows:
        if row['status'] != 'ok':
            paper_cell = _pair(row['paper']['psnr'], row['paper']['ssim']) if row['paper'] \
                else 'no paper value'
            lines.append('| %s | — | %s | not run: %s | — | %s | %s | — |' % (
                row['dataset'], paper_cell, row['reason'].replace('|', '\\|'),
                _pairs_cell(row), _checkpoint_cell(row)))
            continue
        for label, psnr_key, ssim_key, _ in PROTOCOLS:
            if label == 'paper':
                paper_cell = _pair(row['paper']['psnr'], row['paper']['ssim']) \
                    if row['paper'] else 'no paper value'
                diff = _diff(row['difference']) if row['difference'] else '—'
            else:
                paper_cell, diff = 'no paper value (paper used the RGB protocol)', '—'
            lines.append('| %s | %s | %s | %s | %s | %s | %s | %s |' % (
                row['dataset'], label, paper_cell,
                _pair(row['ours'][psnr_key], row['ours'][ssim_key], 4), diff,
                _pairs_cell(row), _checkpoint_cell(row), row['date']))
    lines += ['', '## Notes', '']
    lines += ['- **%s**: %s.' % (label, text) for label, _, _, text in PROTOCOLS]
    lines.append('- The Y-protocol numbers have no counterpart in the paper (which used the RGB '
                 'protocol); they are given for comparison with later papers only.')
    for row in rows:
        if row['status'] == 'ok' and row['test_set'] == 'validation':
            lines.append('- **%s on validation pairs**: no test data at `--test_path`, so its '
                         'row comes from the %d validation pairs in `%s` (never trained on), '
                         'not from the paper\'s test set: a proxy for the paper\'s number, '
                         'not a reproduction of it.'
                         % (row['dataset'], row['test_pairs'], _relative(row['test_folder'])))
    lines.append('- ' + _rain100h_note(rows))
    lines.append('- "Test pairs found" is the number of (rainy, clean) pairs found in the test '
                 'folder; ⚠ marks a count different from the paper\'s test set.')
    halves = ['%s=%s' % (r['dataset'], r['rainy_half']) for r in rows if r['rainy_half']]
    lines.append('- Side-by-side pairs (`--rainy_half`): %s; usual values %s.' % (
        ', '.join(halves) or 'none used',
        ', '.join('%s=%s' % item for item in sorted(paper.USUAL_RAINY_HALF.items()))))
    if report.get('training'):
        lines.append('- Training time estimate: %s s/iteration (%s).' % (
            '%.3f' % report['training']['seconds_per_iteration']
            if report['training']['seconds_per_iteration'] is not None else 'n/a',
            report['training']['how']))
    missing = [r for r in rows if r['status'] != 'ok']
    if missing:
        lines.append('- Not run: %s. Put the test data at `--test_path`, the checkpoints at '
                     '`--checkpoint_dir` (or pass `--checkpoint DATASET=PATH`), or train them '
                     'with `python reproduce.py --train`.'
                     % ', '.join(r['dataset'] for r in missing))
    lines.append('')
    return '\n'.join(lines)


def build_report(rows, args, argv, training=None):
    """The dict written to REPRODUCTION.json."""
    return {
        'generated': datetime.datetime.now(datetime.timezone.utc).strftime(
            '%Y-%m-%d %H:%M UTC'),
        'command': ' '.join(['python reproduce.py'] + list(argv)),
        'protocols': {label: {'psnr': p, 'ssim': s, 'description': text}
                      for label, p, s, text in PROTOCOLS},
        'paper_table': {m: {d: {'psnr': v[0], 'ssim': v[1]} for d, v in values.items()}
                        for m, values in paper.PAPER_TABLE.items()},
        'settings': {'batch_size': args.batch_size, 'iterations': args.iterations,
                     'checkpoint_dir': args.checkpoint_dir, 'test_path': args.test_path,
                     'validation_path': args.validation_path,
                     'data_path': args.data_path, 'test_dir': args.test_dir},
        'training': training,
        'datasets': rows,
    }


def write_report(report, out_dir):
    """Write REPRODUCTION.md and REPRODUCTION.json into ``out_dir``; returns both paths."""
    os.makedirs(out_dir, exist_ok=True)
    md_path = os.path.join(out_dir, 'REPRODUCTION.md')
    json_path = os.path.join(out_dir, 'REPRODUCTION.json')
    with open(json_path, 'w') as handle:
        json.dump(report, handle, indent=2)
    with open(md_path, 'w') as handle:
        handle.write(render_markdown(report))
    return md_path, json_path
