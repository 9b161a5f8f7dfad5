"""``python -m gameserver``: the ``gameserver`` command (how the supervisor starts workers)."""

import sys

from gameserver.cli import main

sys.exit(main())
