"""Colours: a modality keeps one colour everywhere (every panel, val/*, compare); runs get their own.

The same lists are in assets/cggm_plot.js, which uses them when a spec names no colour.
"""

from __future__ import annotations

from collections.abc import Sequence

MODALITY_COLORS = [
    "#636EFA",
    "#EF553B",
    "#00CC96",
    "#AB63FA",
    "#FFA15A",
    "#19D3F3",
    "#FF6692",
    "#B6E880",
    "#FF97FF",
    "#FECB52",
]
RUN_COLORS = [
    "#1b9e77",
    "#d95f02",
    "#7570b3",
    "#e7298a",
    "#66a61e",
    "#a6761d",
    "#e6ab02",
    "#666666",
    "#1f78b4",
    "#b15928",
]


def modality_color(modality: str, modalities: Sequence[str]) -> str:
    """By the modality's place in the run's (sorted) modalities, so m0 is the same blue in every panel."""
    order = sorted(modalities)
    i = order.index(modality) if modality in order else len(order)
    return MODALITY_COLORS[i % len(MODALITY_COLORS)]


def run_color(i: int) -> str:
    return RUN_COLORS[i % len(RUN_COLORS)]
