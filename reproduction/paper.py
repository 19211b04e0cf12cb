"""The numbers of the ReMAEN paper (Yang & Lu, ICME 2019), kept as plain data.

Used by ``reproduce.py`` to put our results next to the paper's. Values are PSNR (dB) / SSIM
as printed in the paper's table (RGB protocol, see SPEC.md: PSNR/SSIM over the three colour
channels in [0, 1], Gaussian SSIM with VALID filtering). The paper gives no Y-channel numbers.
"""
import collections

DATASETS = ('Rain100L', 'Rain100H', 'Rain800', 'Rain1200', 'Rain1400')
METHOD = 'ReMAEN (ICME\'19)'

# method -> dataset -> (PSNR, SSIM), in the paper's row order.
PAPER_TABLE = collections.OrderedDict([
    ('JORDER (CVPR\'17)', {'Rain100L': (36.11, 0.970), 'Rain100H': (22.15, 0.674),
                           'Rain800': (22.24, 0.776), 'Rain1200': (24.32, 0.862),
                           'Rain1400': (27.55, 0.853)}),
    ('DID-MDN (CVPR\'18)', {'Rain100L': (25.70, 0.858), 'Rain100H': (17.39, 0.612),
                            'Rain800': (21.89, 0.795), 'Rain1200': (27.95, 0.908),
                            'Rain1400': (27.99, 0.869)}),
    ('DualCNN (CVPR\'18)', {'Rain100L': (26.87, 0.860), 'Rain100H': (14.23, 0.468),
                            'Rain800': (24.11, 0.821), 'Rain1200': (23.38, 0.787),
                            'Rain1400': (24.98, 0.838)}),
    ('RESCAN (ECCV\'18)', {'Rain100L': (36.64, 0.975), 'Rain100H': (26.45, 0.846),
                           'Rain800': (24.09, 0.841), 'Rain1200': (29.95, 0.884),
                           'Rain1400': (28.57, 0.891)}),
    (METHOD, {'Rain100L': (37.80, 0.982), 'Rain100H': (28.97, 0.884),
              'Rain800': (26.86, 0.854), 'Rain1200': (32.50, 0.911),
              'Rain1400': (32.31, 0.916)}),
])

# dataset -> (training pairs, test pairs) as listed by the authors.
DATASET_SIZES = {'Rain100L': (200, 100), 'Rain100H': (1800, 100), 'Rain800': (700, 100),
                 'Rain1200': (12000, 1200), 'Rain1400': (12600, 1400)}

# Which half of a side-by-side pair image is the rainy one in the usual public releases
# (ID-CGAN's Rain800: clean | rainy; DID-MDN's Rain1200: rainy | clean). Only needed for
# those releases: the authors' rain-N/norain-N copies are separate files.
USUAL_RAINY_HALF = {'Rain800': 'right', 'Rain1200': 'left'}

# Rain100H: 546 of the 1,800 training images share backgrounds with the test images; PReNet
# and later papers train on the other 1,254 ("RainTrainH"). The ReMAEN README lists 1,800.
RAIN100H_TRAIN_SIZES = {1800: 'the full 1,800-pair set (as listed in the ReMAEN README)',
                        1254: 'RainTrainH (1,254 pairs, test backgrounds removed; PReNet)'}


def paper_result(dataset, method=METHOD):
    """``{'psnr': ..., 'ssim': ...}`` of ``method`` on ``dataset``, or None if not in the paper."""
    values = PAPER_TABLE.get(method, {}).get(dataset)
    return None if values is None else {'psnr': values[0], 'ssim': values[1]}
