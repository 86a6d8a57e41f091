"""03_wav2vec2's figure: which encoder layers carry the signal, and which the heads weight."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.figure import Figure


def plot_layer_signal(
    layer_tables: Mapping[str, pd.DataFrame],
    probe_tables: Mapping[str, pd.DataFrame],
    layer_weights: Mapping[str, Sequence[float]],
) -> Figure:
    """Validation EER of linear probes by layer (left) and learned layer weights (right).

    Left, per protocol: a probe on one layer's pooled statistics (circles, ``layer_tables``:
    ``layer``, ``val_eer``) and the probe head on layers 0..k drawn at k (crosses, dashed,
    best C per k: ``probe_tables``' ``first_layers``, ``val_eer``), showing how far the lower
    layers add up. Right: each weighted-sum head's softmax weight per layer, by label.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for protocol, table in layer_tables.items():
        line = axes[0].plot(table["layer"], 100 * table["val_eer"], marker="o", label=protocol)
        if protocol in probe_tables:
            probe = probe_tables[protocol].groupby("first_layers")["val_eer"].min()
            axes[0].plot(
                probe.index - 1, 100 * probe.values, ls="--", color=line[0].get_color(), marker="x"
            )
    axes[0].set(
        xlabel="layer (0 = input embeddings)",
        ylabel="validation EER (%)",
        title="Linear probe: one layer (o), layers 0..k (x, dashed)",
    )
    for label, weights in layer_weights.items():
        axes[1].bar([f"{i}" for i in range(len(weights))], weights, alpha=0.6, label=label)
    axes[1].set(xlabel="layer", ylabel="softmax weight", title="Learned layer weights")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
