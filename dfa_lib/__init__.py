"""dfa: audio deepfake detection — corpus, baselines, pretrained encoders and reports.

The package is layered; each subpackage imports only the ones listed before it:
``core``, ``data``, ``scoring``, ``features``, ``models``, ``detector``, ``training``,
``evaluation``, ``reporting``; the command line (``cli``), the app and the studies sit on top.
"""

__version__ = "0.1.0"
