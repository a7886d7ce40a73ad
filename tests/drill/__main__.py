import sys

from tests.drill.run import main

sys.exit(main(sys.argv[1:]))
