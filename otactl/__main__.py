from __future__ import annotations

import sys

from otactl.cli import main

sys.exit(main())
