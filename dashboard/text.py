"""User text (run names, metric keys, tags) on its way into Plotly.

Plotly renders a subset of HTML in every text it draws (legend, titles, hover, axis labels,
annotations): `<a href>`, `<b>`, `<br>`, `<span style>`. A run named `<a href="…">x</a>` would
be a live link in a legend. Escaping `&`, `<` and `>` as entities, which Plotly decodes for
display, shows such text as typed. Dash components need nothing: React escapes their text.
"""

from __future__ import annotations


def plotly_text(s: object) -> str:
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
