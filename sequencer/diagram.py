"""Draw the state machine from the same table the sequencer runs."""

from __future__ import annotations

from sequencer.machine import TRANSITIONS, Step


def _sources(row: dict[str, object]) -> list[Step]:
    source = row["source"]
    return list(source) if isinstance(source, list) else [source]  # type: ignore[list-item]


def mermaid() -> str:
    """A Mermaid ``stateDiagram-v2`` of :data:`sequencer.machine.TRANSITIONS`."""
    lines = ["stateDiagram-v2", f"    [*] --> {Step.IDLE.name}"]
    for row in TRANSITIONS:
        label = str(row["trigger"])
        guard = row.get("conditions") or row.get("unless")
        if guard:
            label += f" [{'not ' if 'unless' in row else ''}{guard}]"
        for source in _sources(row):
            lines.append(f"    {source.name} --> {row['dest'].name}: {label}")
    return "\n".join(lines) + "\n"


def graphviz() -> str:
    """The same diagram in Graphviz ``dot``."""
    lines = ["digraph DarkSequence {", "    rankdir=LR;", "    node [shape=box];"]
    for row in TRANSITIONS:
        for source in _sources(row):
            lines.append(
                f'    {source.name} -> {row["dest"].name} [label="{row["trigger"]}"];'
            )
    lines.append("}")
    return "\n".join(lines) + "\n"
