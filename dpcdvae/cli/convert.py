"""``dpcdvae convert IN OUT``: a weights-only copy of a checkpoint the user trusts.

Every command reads checkpoints with ``torch.load(weights_only=True)`` and refuses a file that needs full unpickling
(it could run code stored in it). This command is the one explicit way past that refusal: it reads ``IN`` fully
(running whatever its pickle names, so only for a file whose author you trust) and writes ``OUT``, which holds
tensors and plain data only and loads everywhere else.
"""
from __future__ import annotations

import sys

from ..utils.fileio import strict_json_dumps


def add_parser(sub) -> None:
    """Register ``dpcdvae convert IN OUT``."""
    p = sub.add_parser("convert", help="write a weights-only copy of a checkpoint you trust (reading IN runs code "
                                       "stored in it; OUT loads without)")
    p.add_argument("input", metavar="IN", help="a dpcdvae checkpoint that needs full unpickling (trusted source only)")
    p.add_argument("output", metavar="OUT", help="the weights-only copy to write (must not exist)")
    p.set_defaults(func=_cmd_convert)


def _cmd_convert(a) -> int:
    from ..models.checkpoint import convert_checkpoint

    res = convert_checkpoint(a.input, a.output, log=lambda line: print(line, file=sys.stderr, flush=True))
    if res["dropped"]:
        print(f"[dpcdvae] left out (not plain data): {', '.join(res['dropped'][:10])}"
              f"{' ...' if len(res['dropped']) > 10 else ''}", file=sys.stderr)
    print(strict_json_dumps(res))
    return 0
