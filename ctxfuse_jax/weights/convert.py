"""Converts a PyTorch checkpoint into the zoo's weights file, once, without torch.

    python -m ctxfuse_jax.weights.convert --arch resnet18 --src resnet18-f37072fd.pth \
        --dst resnet18_imagenet.npz

The conversion itself is `ctxfuse_jax.weights.layout`; this module is the CLI only, and the
package does not import it (so runpy finds it unimported and does not warn). Like
`python -m ctxfuse_jax.main`, a file that cannot be used prints one `error: ...` and exits 2.
"""

import argparse
from collections.abc import Sequence
import os

from ctxfuse_jax.errors import UserError
from ctxfuse_jax.models import build_model
from ctxfuse_jax.models.variables import SEP
from ctxfuse_jax.weights.layout import convert_state_dict, torch_key
from ctxfuse_jax.weights.pretrained import save_weights
from ctxfuse_jax.weights.pth import read_state_dict

USER_ERROR_STATUS = 2


def main(argv: Sequence[str] | None = None) -> None:
    """Converts one checkpoint; the number of classes is read from the file's head."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', required=True, help='model name, e.g. resnet18, vgg16_bn')
    parser.add_argument('--src', required=True, help='torchvision or CSAIL .pth / .pth.tar file')
    parser.add_argument('--dst', required=True, help='.npz file to write')
    args = parser.parse_args(argv)
    try:
        model = build_model(args.arch)
    except ValueError as error:  # an unknown name: a usage error, with the usage
        parser.error(str(error))

    try:
        state_dict = read_state_dict(args.src)
        head = state_dict.get(torch_key(SEP.join(('params', model.head_name, 'kernel'))))
        if head is not None and head.ndim == 2:
            model = model.clone(num_classes=head.shape[0])
        variables = convert_state_dict(state_dict, model)
    except UserError as error:
        parser.exit(USER_ERROR_STATUS, f'error: {error}\n')
    try:
        save_weights(args.dst, variables, {'arch': args.arch, 'num_classes': model.num_classes,
                                           'source': os.path.basename(args.src)})
    except OSError as error:
        parser.exit(USER_ERROR_STATUS, f'error: cannot write {args.dst}: {error.strerror}\n')
    print(f'wrote {args.dst}: {args.arch}, {model.num_classes} classes, {len(variables)} arrays')


if __name__ == '__main__':
    main()
