"""`python -m station.servers.mcsp`: the reference server (as `station mcsp-server`)."""

import sys

from station.servers.mcsp.cli import main

sys.exit(main())
