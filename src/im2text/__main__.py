import sys

from im2text.cli import main

sys.exit(main())
