"""Writing an audit: ``audit.json`` (every finding) and ``audit.html`` (thumbnails, offline).

``write_outputs`` writes both, and the side-by-side thumbnail strips, to the audit folder.
"""
import html
import json
import os

import cv2
import numpy as np

from auditing import audit_scan
from auditing import backgrounds
from loading import discovery
from console import errors
from pictures import gallery
from loading import images
from loading.discovery import DataError

STRIP_PANEL = 240         # width of one panel of the HTML's side-by-side thumbnails
MAX_STRIPS = 200          # findings shown with thumbnails (all are listed)


def result_json(result):
    """audit.json's content: everything but the in-memory images."""
    datasets = []
    for data in result['datasets']:
        scan_ = data['scan']
        datasets.append({
            'name': data['label'], 'folder': data['folder'], 'layout': data['layout'],
            'pairs': data['pairs'], 'sizes': dict(scan_['sizes']),
            'pairing_error': data['pairing_error'], 'unmatched': data['unmatched'],
            'unreadable': scan_['problems'],
            'rain_level': {'psnr': scan_['psnr'], 'ssim': scan_['ssim']},
            'repeated_backgrounds': data['repeated_backgrounds'],
            'identical_rainy': data['identical_rainy'], 'shared_rain': data['shared_rain'],
            'pairs_with_repeated_background': sorted(
                set(audit_scan.affected(data['repeated_backgrounds'], 'a'))
                | set(audit_scan.affected(data['repeated_backgrounds'], 'b')),
                key=discovery.natural_key)})
    return {'settings': backgrounds.settings_json(), 'datasets': datasets,
            'comparisons': result['comparisons']}


def _sections(result):
    """(title, findings, shown when empty) of each part of a result, in report order."""
    for data in result['datasets']:
        yield data['label'] + ': repeated backgrounds', data['repeated_backgrounds'], True
        yield data['label'] + ': identical rainy images', data['identical_rainy'], False
        yield data['label'] + ': shared rain', data['shared_rain'], False
    for comparison in result['comparisons']:
        title = '%s against %s' % tuple(comparison['sets'])
        yield title + ': shared backgrounds', comparison['shared_backgrounds'], True
        yield title + ': identical rainy images', comparison['identical_rainy'], False
        yield title + ': shared rain', comparison['shared_rain'], False


def _all_findings(result):
    """Every finding of a result, in report order."""
    for _, findings, _ in _sections(result):
        for finding in findings:
            yield finding


def finding_strip(image_a, image_b, k, labels):
    """Side-by-side thumbnails: A as stored, B turned back into A's orientation and size.

    Args:
      image_a, image_b: [H, W, 3] float BGR in [0, 1].
      k: the orientation of A that shows B.
      labels: the two captions.

    Returns:
      uint8 BGR strip (``gallery.compare_strip``), each panel STRIP_PANEL wide at most.
    """
    left = backgrounds.shrink(image_a, STRIP_PANEL)
    turned = backgrounds.orient(image_b, backgrounds.inverse(k))
    right = cv2.resize(np.ascontiguousarray(turned), (left.shape[1], left.shape[0]),
                       interpolation=cv2.INTER_AREA)
    return gallery.compare_strip(left, right, labels=labels)


def _strip_name(number, finding):
    safe = ''.join(c if c.isalnum() else '_' for c in '%s_%s' % (finding['a']['pairs'][0],
                                                                 finding['b']['pairs'][0]))
    return '%04d_%s.jpg' % (number, safe[:40])


def write_strips(out_dir, result, pair_lookup):
    """Write strips/<n>_<names>.jpg for the first MAX_STRIPS findings.

    Sets ``finding['strip']`` to the strip's path relative to ``out_dir``.

    Args:
      out_dir: the audit folder.
      result: from ``audit_scan.run_audit``.
      pair_lookup: {(set label, pair name): Pair}.
    """
    folder = os.path.join(out_dir, 'strips')
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.endswith('.jpg'):
                os.remove(os.path.join(folder, name))
    for number, finding in enumerate(_all_findings(result)):
        if number >= MAX_STRIPS:
            break
        a, b = finding['a'], finding['b']
        rainy = finding['kind'] in ('identical rainy', 'shared rain')  # rain shown
        try:
            loaded = [images.load_pair(pair_lookup[(side['set'], side['pairs'][0])])
                      for side in (a, b)]
        except DataError:
            continue
        image_a, image_b = [pair[0] if rainy else pair[1] for pair in loaded]
        labels = ['%s %s' % (a['set'], a['pairs'][0]),
                  '%s %s%s' % (b['set'], b['pairs'][0],
                               '' if finding['k'] == 0 else ' (turned back)')]
        name = _strip_name(number, finding)
        gallery.write_compare(os.path.join(folder, name),
                              finding_strip(image_a, image_b, finding['k'], labels))
        finding['strip'] = 'strips/' + name


# The test gallery's style, with text cells aligned left and top.
_CSS = gallery._CSS + 'th, td { text-align: left; vertical-align: top; white-space: normal; }\n'


def _link(path, out_dir, text):
    return '<a href="%s">%s</a>' % (gallery._url(path, out_dir), html.escape(text))


def _finding_row(finding, out_dir):
    cells = []
    for side in (finding['a'], finding['b']):
        name = os.path.basename(side['path'])
        if side.get('half'):
            name += ' (%s half)' % side['half']
        cells.append('%s %s<br>%s' % (html.escape(side['set']),
                                      html.escape(', '.join(side['pairs'])),
                                      _link(side['path'], out_dir, name)))
    strip = ('<img src="%s" loading="lazy" alt="%s">'
             % (gallery._url(os.path.join(out_dir, finding['strip']), out_dir),
                html.escape(finding['kind']))
             if finding.get('strip') else '<span class="note">no thumbnails</span>')
    note = html.escape(finding['transform'])
    if finding.get('same_rain'):
        note += ', same rain too'
    return ('<tr><td>%s</td><td>%s</td><td>%s</td><td>%.3f</td><td>%s</td><td>%s</td></tr>'
            % (html.escape(finding['kind']), cells[0], cells[1], finding['similarity'], note,
               strip))


def _section_html(title, findings, out_dir):
    head = ('<h2>%s</h2>' % html.escape(title))
    if not findings:
        return head + '<p class="note">none</p>'
    rows = ''.join(_finding_row(f, out_dir) for f in findings)
    return (head + '<table><tr><th>kind</th><th>A</th><th>B</th><th>similarity</th>'
            '<th>orientation of A that shows B</th><th>A | B</th></tr>%s</table>' % rows)


def audit_html(out_dir, result, lines):
    """The text of audit.html: the terminal report, then every finding with thumbnails."""
    parts = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
             '<title>Dataset audit</title><style>%s</style></head><body>' % _CSS,
             '<h1>Dataset audit</h1>', '<pre>%s</pre>' % html.escape('\n'.join(lines))]
    parts += [_section_html(title, findings, out_dir)
              for title, findings, always in _sections(result) if findings or always]
    if sum(1 for _ in _all_findings(result)) > MAX_STRIPS:
        parts.append('<p class="note">Thumbnails are shown for the first %d findings; '
                     'audit.json lists them all.</p>' % MAX_STRIPS)
    parts += ['</body></html>', '']
    return '\n'.join(parts)


def write_text(path, text):
    """Write a UTF-8 text file whole: to ``path``.tmp, then renamed over ``path``."""
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_outputs(out_dir, result, lines):
    """Write audit.json, audit.html and the thumbnail strips.

    Args:
      out_dir: the audit folder (created).
      result: from ``audit_scan.run_audit``.
      lines: the terminal report.

    Returns:
      (json path, html path).

    Raises:
      UsageError: the folder or a file cannot be written.
    """
    lookup = {(d['label'], p.name): p for d in result['datasets']
              for b in d['scan']['backgrounds'][0] for p in b.pairs}
    lookup.update({(d['label'], p.name): p for d in result['datasets']
                   for _, p in d['scan']['digests']})
    json_path = os.path.join(out_dir, 'audit.json')
    html_path = os.path.join(out_dir, 'audit.html')
    try:
        os.makedirs(out_dir, exist_ok=True)
        write_strips(out_dir, result, lookup)
        write_text(json_path, json.dumps(result_json(result), indent=1) + '\n')
        write_text(html_path, audit_html(out_dir, result, lines))
    except OSError as exc:
        raise errors.UsageError('cannot write the audit to {} ({}); pass another folder with '
                                '--out DIR'.format(out_dir, getattr(exc, 'strerror', None)
                                                   or exc))
    return json_path, html_path
