"""Per-attack EER tables as the ASVspoof challenge papers print them: one row per attack, pooled last.

In the ASVspoof evaluation plans an attack's EER scores its spoofed trials against every bona
fide trial of the partition, and the pooled EER scores all spoofed trials against them at
once. The attack id is the manifest's ``generator`` (``A07`` ... ``A19`` for ASVspoof 2019
LA's evaluation set, for instance); the EERs come from :mod:`dfa_lib.scoring.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from dfa_lib.scoring.metrics import eer_by_generator, eer_by_group

POOLED = "pooled"  # the name of the last row: every attack at once
# Generator values that name no attack.
NO_ATTACK = frozenset({"unknown", "human", "-"})


def attack_ids(scored: pd.DataFrame, attack_col: str = "generator") -> list[str]:
    """Return the attack ids the fake rows of ``scored`` name, sorted (none: no such column)."""
    if attack_col not in scored.columns or "label" not in scored.columns:
        return []
    fakes = scored.loc[scored["label"] == "fake", attack_col].dropna().astype(str)
    return sorted(set(fakes) - NO_ATTACK)


def attack_eer_table(
    scored: pd.DataFrame,
    attack_col: str = "generator",
    n_boot: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Return the EER of each attack's fakes against every real clip, with the pooled EER last.

    ``scored`` holds one row per test clip with ``label``, ``score`` (higher: more real) and
    the attack column. Rows: one per attack id (fakes naming none are one ``unknown`` row),
    then :data:`POOLED`. Columns: ``attack``, ``n_real``, ``n_fake``, ``eer`` (a fraction),
    ``threshold``, ``eer_ci_low``, ``eer_ci_high`` (with ``n_boot`` bootstrap replicates),
    ``auc``, ``note``.
    """
    options = dict(n_boot=n_boot, confidence=confidence, seed=seed)
    if attack_col not in scored.columns:
        raise ValueError(
            f"no {attack_col!r} column in the scored clips (columns: {', '.join(scored.columns)}): "
            "per-attack EERs need the attack id of each fake"
        )
    per_attack = eer_by_generator(scored, by=attack_col, generator_col=attack_col, **options)
    pooled = eer_by_group(scored.assign(**{attack_col: POOLED}), by=attack_col, **options)
    table = pd.concat([per_attack, pooled], ignore_index=True)
    return table.rename(columns={attack_col: "attack"})


def attack_eer_by_model(
    scored: Mapping[tuple[str, str], pd.DataFrame], protocol: str, attack_col: str = "generator"
) -> pd.DataFrame:
    """Return the EER (%) by attack (rows, pooled last) of each detector (columns) on ``protocol``.

    ``scored`` maps ``(model, protocol)`` to that detector's scored test clips (as
    :class:`dfa_lib.evaluation.protocol_report.ProtocolEvaluation` keeps them). Detectors whose
    clips name no attack are left out; the table is empty when none names any.
    """
    columns: dict[str, pd.Series] = {}
    attacks: set[str] = set()
    for (model, tested), df in scored.items():
        if tested != protocol or not attack_ids(df, attack_col):
            continue
        table = attack_eer_table(df, attack_col).set_index("attack")
        columns[model] = 100 * table["eer"]
        attacks |= set(table.index) - {POOLED}
    if not columns:
        return pd.DataFrame()
    order = [*sorted(attacks), POOLED]
    return pd.DataFrame(columns).reindex(order).rename_axis("attack")
