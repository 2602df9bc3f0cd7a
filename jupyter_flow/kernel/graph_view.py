"""``%flow graph``: the notebook's graph as a MIME bundle.

``application/vnd.jupyter-flow.graph+json`` is rendered by the JupyterLab extension; the
SVG fallback (laid out in layers by depth) shows in any frontend, nbviewer included.
"""

from __future__ import annotations

import html

from ..core.errors import FlowError

from .progress import _COLOURS

MIME_TYPE = "application/vnd.jupyter-flow.graph+json"
_STATE_COLOURS = {"cached": _COLOURS["CACHED"], "stale": _COLOURS["WAITING"]}


def graph_data(notebook, report: dict[str, str]) -> dict:
    """Nodes (op name, inputs, outputs, status), edges (from, to, variable)."""
    nodes: list[dict] = []
    edges: list[dict] = []
    for name, cell in notebook.cells.items():
        state = report.get(name, "unknown")
        try:
            edge_map, captured = notebook.resolve(cell)
        except FlowError:
            edge_map, captured = {}, []
        nodes.append({
            "id": name, "inputs": list(edge_map), "captured": captured, "outputs": list(cell.outputs),
            "status": "cached" if state == "cached" else "stale", "reason": state,
            "resources": cell.resources,
        })
        edges.extend({"source": producer.name, "target": name, "variable": variable}
                     for variable, producer in edge_map.items())
    return {"version": 1, "nodes": nodes, "edges": edges}


def graph_svg(data: dict) -> str:
    depth: dict[str, int] = {}
    ups: dict[str, list[str]] = {n["id"]: [] for n in data["nodes"]}
    for edge in data["edges"]:
        ups[edge["target"]].append(edge["source"])

    def level(name: str, seen=()) -> int:
        if name not in depth:
            depth[name] = 1 + max((level(u, seen + (name,)) for u in ups[name] if u not in seen), default=-1)
        return depth[name]

    for name in ups:
        level(name)
    columns: dict[int, list[str]] = {}
    for name, d in depth.items():
        columns.setdefault(d, []).append(name)
    box_w, box_h, gap_x, gap_y = 150, 44, 60, 20
    position = {}
    for d, names in columns.items():
        for i, name in enumerate(names):
            position[name] = (10 + d * (box_w + gap_x), 10 + i * (box_h + gap_y))
    width = 20 + (max(columns, default=0) + 1) * (box_w + gap_x)
    height = 20 + max((len(v) for v in columns.values()), default=1) * (box_h + gap_y)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             "font-family='sans-serif' font-size='12'>"]
    for edge in data["edges"]:
        x1, y1 = position[edge["source"]]
        x2, y2 = position[edge["target"]]
        parts.append(f"<line x1='{x1 + box_w}' y1='{y1 + box_h / 2}' x2='{x2}' y2='{y2 + box_h / 2}' "
                     "stroke='#888' stroke-width='1.5'/>")
        parts.append(f"<text x='{(x1 + box_w + x2) / 2}' y='{(y1 + y2 + box_h) / 2 - 4}' text-anchor='middle' "
                     f"fill='#555'>{html.escape(edge['variable'])}</text>")
    for node in data["nodes"]:
        x, y = position[node["id"]]
        colour = _STATE_COLOURS.get(node["status"], "#9e9e9e")
        parts.append(f"<rect x='{x}' y='{y}' width='{box_w}' height='{box_h}' rx='6' fill='white' "
                     f"stroke='{colour}' stroke-width='2'/>")
        parts.append(f"<text x='{x + 8}' y='{y + 18}' font-weight='bold'>{html.escape(node['id'])}</text>")
        parts.append(f"<text x='{x + 8}' y='{y + 35}' fill='{colour}'>{html.escape(node['reason'][:22])}</text>")
    parts.append("</svg>")
    return "".join(parts)


def graph_bundle(notebook, report: dict[str, str]) -> dict:
    data = graph_data(notebook, report)
    lines = [f"{n['id']}: {n['reason']}" + (f" <- {', '.join(n['inputs'])}" if n["inputs"] else "")
             for n in data["nodes"]]
    return {MIME_TYPE: data, "image/svg+xml": graph_svg(data), "text/plain": "\n".join(lines) or "(no %%flow cells)"}
