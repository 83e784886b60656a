"""Seeded, stratified train/validation splits."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

__all__ = ["stratified_split", "carve_validation"]


def stratified_split(
    labels: Sequence[int], fraction: float, seed: int = 0, groups: Optional[Sequence] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, valid)`` with about ``fraction`` of every label in ``valid``.

    With ``groups`` (e.g. speakers) the stratification is by (group, label), so each speaker keeps the
    same share of each class in both parts. Deterministic for a given ``seed``; indices are sorted.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must lie in [0, 1), got {fraction}")
    labels = np.asarray(labels)
    keys = labels if groups is None else np.array([f"{g}\x00{y}" for g, y in zip(groups, labels)])
    rng = np.random.default_rng(seed)
    valid = []
    for key in np.unique(keys):
        members = np.flatnonzero(keys == key)
        rng.shuffle(members)
        valid.extend(members[: int(round(fraction * members.size))].tolist())
    valid = np.sort(np.asarray(valid, dtype=np.int64))
    train = np.setdiff1d(np.arange(labels.size), valid)
    return train, valid


def carve_validation(
    train: Sequence[int], labels: Sequence[int], fraction: float, seed: int = 0, groups: Optional[Sequence] = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split the sample indices ``train`` of a data set into ``(train, valid)`` indices of that data set.

    ``labels`` (and ``groups``) are indexed by data-set sample; the split is :func:`stratified_split`
    on the members of ``train`` (by (group, label) when ``groups`` is given).
    """
    train = np.asarray(train, dtype=np.int64)
    labels = np.asarray(labels)[train]
    sub_groups = None if groups is None else np.asarray(groups)[train]
    keep, valid = stratified_split(labels, fraction, seed, sub_groups)
    return train[keep], train[valid]
