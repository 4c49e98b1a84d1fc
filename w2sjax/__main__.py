import sys

from w2sjax.cli import main

sys.exit(main())
