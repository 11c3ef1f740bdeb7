"""``python -m dpcdvae.cli ...``: the ``dpcdvae`` command."""
import sys

from . import main

sys.exit(main())
