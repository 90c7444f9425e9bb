"""Figures as a readable Markdown report (stdout and ``latest.md``) and as JSON files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _lat(ms: dict[str, float]) -> str:
    if not ms.get("count"):
        return "-"
    return " / ".join(f"{p} {_ms(ms[p])}" for p in ("p50", "p95", "p99")) + " ms"


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _integrity(r: dict[str, Any]) -> str:
    text = (
        f"lost {r['lost']}, dup {r['duplicates']}, reordered {r['reordered']}"
        f"+{r['sender_reordered']}, unanswered {r['unanswered']}"
    )
    if r["errors"]:
        text += ", errors " + ", ".join(f"{k}: {v}" for k, v in r["errors"].items())
    return text


def summary_rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(scenario, figure, detail) rows of the headline table."""
    rows: list[tuple[str, str, str]] = []
    if (f := results.get("fanout")) and "saturated" in f:
        sat, half = f["saturated"], f["half"]
        rows.append(
            (
                f"fanout: 1 channel, {f['members']} members, saturated",
                f"{_n(sat['deliveries_per_s'])} deliveries/s",
                _integrity(sat),
            )
        )
        rows.append(
            (
                f"fanout: at half that ({half['offered_msgs_per_s']:.0f} msg/s)",
                _lat(half["latency_ms"]),
                f"{_n(half['deliveries_per_s'])} deliveries/s; " + _integrity(half),
            )
        )
    if (r := results.get("rooms")) and "latency_ms" in r:
        stored = "" if r["stored"] is None else f", stored {r['stored']:,}"
        rows.append(
            (
                f"rooms: {r['users']} users in {r['channels']} channels, "
                f"{r['offered_msgs_per_s']:.0f} msg/s offered",
                f"{r['delivered_pct']:.1f} % delivered; {_lat(r['latency_ms'])}",
                f"sent {r['sent']:,}, acked {r['acked']:,}{stored}; ack {_lat(r['ack_ms'])}; "
                + _integrity(r),
            )
        )
    if c := results.get("connect"):
        for kind in ("guests", "tokens"):
            if k := c.get(kind):
                rows.append(
                    (
                        f"connect: {c['clients']} {kind}, hello + join",
                        f"{_n(k['handshakes_per_s'])} handshakes/s",
                        f"{k['joined']} joined in {k['seconds']} s, failures {k['failures'] or 0}",
                    )
                )
        if o := c.get("one_channel"):
            took = "-" if o["all_joined_s"] is None else f"{o['all_joined_s']} s"
            rows.append(
                (
                    f"connect: {o['members']} members join one channel",
                    f"all joined in {took}",
                    f"{o['joined']} joined in {o['seconds']} s, failures {o['failures'] or 0}",
                )
            )
    if i := results.get("idle"):
        for g in i.get("gateways", []):
            rows.append(
                (
                    f"idle: {i['clients']} clients, {g['gateway']}",
                    f"{g['kb_per_connection']} KB/connection",
                    f"{g['connections']} connections, RSS {g['rss_before_mb']} -> "
                    f"{g['rss_after_mb']} MB",
                )
            )
    return rows


def _windows(results: dict[str, dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    found = []
    for name, r in results.items():
        if "processes" in r:
            found.append((name, r["processes"]))
        for key, sub in r.items():
            if isinstance(sub, dict) and "processes" in sub:
                found.append((f"{name} {key}", sub["processes"]))
    return found


def markdown(results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"# justchat bench, {meta['started']}",
        "",
        f"`{meta['command']}` on commit {meta['commit']}; {meta['setup']}.",
        "",
        "| scenario | figure | detail |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in summary_rows(results)]
    windows = _windows(results)
    if windows:
        names = list(dict.fromkeys(row["process"] for _, rows in windows for row in rows))
        lines += [
            "",
            "CPU (% of one core) / RSS (MB) of each process over each measured window:",
            "",
        ]
        lines.append("| window | " + " | ".join(names) + " |")
        lines.append("|---" * (len(names) + 1) + "|")
        for label, rows in windows:
            by = {row["process"]: row for row in rows}
            cells = [
                f"{by[n]['cpu_pct']:.0f} % / {by[n]['rss_mb']:.0f}" if n in by else "-"
                for n in names
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    closes = [f"{name} {json.dumps(r['closes'])}" for name, r in results.items() if r.get("closes")]
    if closes:
        lines += ["", "Connections the server closed (code reason: count): " + "; ".join(closes)]
    if "profiles" in meta:
        lines += ["", f"py-spy flamegraphs of each service and window: `{meta['profiles']}/`"]
    return "\n".join(lines) + "\n"


def save(folder: Path, stamp: str, name: str, result: dict[str, Any], meta: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stamp}-{name}.json"
    path.write_text(json.dumps({"scenario": name, "meta": meta, "result": result}, indent=2))
    return path
