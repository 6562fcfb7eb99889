import sys

from mmsim_cli import main

sys.exit(main())
