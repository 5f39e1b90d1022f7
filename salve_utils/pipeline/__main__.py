"""``python -m salve_utils.pipeline``: the pipeline's command line."""

import sys

from . import main

sys.exit(main())
