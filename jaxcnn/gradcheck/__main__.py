"""``python -m jaxcnn.gradcheck``: see `jaxcnn.gradcheck.main`."""

import sys

from jaxcnn.gradcheck import main

sys.exit(main())
