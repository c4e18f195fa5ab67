from __future__ import annotations

import sys

from firmware.otap.cli import main

sys.exit(main())
