"""Metric key families as the backend's catalog declares them (cggm_core.keys), and the catch-all.

The dashboard names no family itself: `/api/catalog` → `keys.families` lists each family's key
templates (``acc/{m}``: ``{m}`` a modality, ``{metric}`` a task metric, ``{name}`` any one
segment), title, default scale and whether it has a curve per modality. A key no family matches
gets a panel of its own prefix (``gblend/*``), so a new method's diagnostics show up unannounced.
A backend without `keys` in its catalog gets catch-all panels only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SCALES = ("linear", "log", "symlog")


@dataclass(frozen=True)
class Family:
    name: str
    templates: tuple[str, ...]
    title: str
    scale: str = "linear"
    per_modality: bool = False
    when: str = "step"  # "step" | "epoch" | "end"
    source: str = "probe"
    better: str | None = None  # "max" | "min"
    show: bool = True
    declared: bool = True  # False: a catch-all for a prefix the catalog does not know

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Family:
        scale = doc.get("scale", "linear")
        return cls(
            name=str(doc["name"]),
            templates=tuple(str(t) for t in doc.get("templates", [])),
            title=str(doc.get("title", doc["name"])),
            scale=scale if scale in SCALES else "linear",
            per_modality=bool(doc.get("per_modality", False)),
            when=str(doc.get("when", "step")),
            source=str(doc.get("source", "probe")),
            better=doc.get("better") if doc.get("better") in ("max", "min") else None,
            show=bool(doc.get("show", True)),
        )

    @property
    def drawn(self) -> bool:
        """A chart on the run page: shown, and logged more than once (end-of-run keys go to the summary)."""
        return self.show and self.when != "end"


@dataclass(frozen=True)
class KeyInfo:
    family: Family
    modality: str | None
    label: str  # legend text: the modality, or the key itself


def catch_all(prefix: str) -> Family:
    return Family(
        name=f"other:{prefix}",
        templates=(f"{prefix}/…",),
        title=f"{prefix}/* (not declared in cggm_core.keys)" if prefix else "other keys",
        declared=False,
    )


class Families:
    """Match keys to families in declaration order; unknown keys to a catch-all per prefix."""

    def __init__(self, catalog: Mapping[str, Any] | None) -> None:
        keys_doc = (catalog or {}).get("keys") or {}
        self.families = [Family.from_json(f) for f in keys_doc.get("families", []) if isinstance(f, Mapping)]
        metrics = sorted(
            {str(m["name"]) for ms in (keys_doc.get("task_metrics") or {}).values() for m in ms if "name" in m},
            key=lambda n: (-len(n), n),
        )
        metric_rx = "|".join(re.escape(n) for n in metrics) or r"[^/]+"
        batch = sorted((str(n) for n in keys_doc.get("batch_metrics") or []), key=lambda n: (-len(n), n))
        eps_rx = "|".join(re.escape(n) for n in batch) or metric_rx  # an older backend: no batch metrics listed
        self._rules: list[tuple[re.Pattern[str], Family]] = []
        for f in self.families:
            for t in f.templates:
                rx = re.escape(t).replace(r"\{m\}", r"(?P<m>[^/]+)").replace(r"\{name\}", r"[^/]+")
                rx = rx.replace(r"\{metric\}", f"(?:{metric_rx})").replace(r"\{eps\}", f"(?:{eps_rx})")
                self._rules.append((re.compile(f"^{rx}$"), f))
        self._order = {f.name: i for i, f in enumerate(self.families)}
        self._cache: dict[str, KeyInfo] = {}
        # Each task's evaluation metrics in the catalog's order (the summary card's table).
        self.task_metrics: dict[str, list[tuple[str, str]]] = {
            str(task): [(str(m["name"]), str(m.get("title", m["name"]))) for m in ms if "name" in m]
            for task, ms in (keys_doc.get("task_metrics") or {}).items()
        }
        self.metric_better = {
            str(m["name"]): m.get("better")
            for ms in (keys_doc.get("task_metrics") or {}).values()
            for m in ms
            if "name" in m
        }

    def info(self, key: str) -> KeyInfo:
        hit = self._cache.get(key)
        if hit is None:
            hit = self._match(key)
            self._cache[key] = hit
        return hit

    def _match(self, key: str) -> KeyInfo:
        for rx, family in self._rules:
            m = rx.match(key)
            if m:
                modality = m.groupdict().get("m")
                return KeyInfo(family, modality, modality if modality is not None else key)
        prefix, _, _rest = key.partition("/")
        return KeyInfo(catch_all(prefix if _rest else ""), None, key)

    def order(self, family: Family) -> tuple[int, str]:
        """Declared families in catalog order, then catch-alls by prefix."""
        return (self._order.get(family.name, len(self._order)), family.name)

    def group(self, keys: Iterable[str], *, drawn_only: bool = True) -> list[tuple[Family, list[str]]]:
        """[(family, its keys sorted)] in page order; only families drawn as charts unless told otherwise."""
        by: dict[str, tuple[Family, list[str]]] = {}
        for key in keys:
            info = self.info(key)
            if drawn_only and not info.family.drawn:
                continue
            by.setdefault(info.family.name, (info.family, []))[1].append(key)
        return sorted(((f, sorted(ks)) for f, ks in by.values()), key=lambda fk: self.order(fk[0]))

    def modalities(self, keys: Iterable[str]) -> list[str]:
        """Every modality named by a per-modality key, sorted: the colour order of a run."""
        return sorted({m for k in keys if (m := self.info(k).modality) is not None})

    def better(self, key: str) -> str | None:
        """'max' or 'min' for a final-metrics table: the family's, else the task metric's in the key."""
        info = self.info(key)
        if info.family.better:
            return info.family.better
        for part in key.split("/"):
            if self.metric_better.get(part) in ("max", "min"):
                return str(self.metric_better[part])
        return None
