"""The report tree behind ``trace`` (ovs-appctl ofproto/trace's middle part).

xlate appends nodes while it translates: a table node per lookup, holding the
actions it ran; a resubmit or goto_table adds the next table's node beside
the actions of the table that jumped.  Printing indents like OVS: a node that
is the last of its list continues at the parent's depth instead of nesting,
so a long chain of resubmits reads top to bottom instead of drifting right.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BRIDGE = "bridge"
TABLE = "table"
ACTION = "action"
DETAIL = "detail"
WARN = "warn"
ERROR = "error"

_TERMINAL = {ACTION, DETAIL, WARN, ERROR}


@dataclass
class TraceNode:
    kind: str
    text: str
    subs: list["TraceNode"] = field(default_factory=list)

    def add(self, kind: str, text: str) -> "TraceNode":
        node = TraceNode(kind, text)
        self.subs.append(node)
        return node


def format_tree(nodes: list[TraceNode], level: int = 0) -> str:
    out: list[str] = []
    _format(nodes, level, out)
    return "".join(out)


def _format(nodes: list[TraceNode], level: int, out: list[str]) -> None:
    for i, node in enumerate(nodes):
        if node.kind == BRIDGE:
            out.append("\n")
        more = int(i != len(nodes) - 1 or node.kind in _TERMINAL)
        pad = " " * ((level + more) * 4)
        if node.kind == DETAIL:
            out.append(f"{pad} -> {node.text}\n")
        elif node.kind == WARN:
            out.append(f"{pad} >> {node.text}\n")
        elif node.kind == ERROR:
            out.append(f"{pad} >>>> {node.text} <<<<\n")
        elif node.kind == BRIDGE:
            out.append(f"{pad}{node.text}\n{pad}{'-' * len(node.text)}\n")
        else:
            out.append(f"{pad}{node.text}\n")
        _format(node.subs, level + 2 * more, out)
