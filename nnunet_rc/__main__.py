import sys

from nnunet_rc.cli import main

if __name__ == "__main__":
    sys.exit(main())
