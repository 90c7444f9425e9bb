"""A minimal Prometheus text-format registry: counters and gauges, no dependencies."""

from __future__ import annotations

from collections.abc import Callable


class Metric:
    def __init__(self, name: str, help_text: str, kind: str) -> None:
        self.name, self.help, self.kind = name, help_text, kind
        self.values: dict[tuple[tuple[str, str], ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def set(self, value: float, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] = value

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0.0)


class Registry:
    def __init__(self, namespace: str = "justchat") -> None:
        self.namespace = namespace
        self._metrics: list[Metric] = []
        self._collectors: list[Callable[[], None]] = []

    def counter(self, name: str, help_text: str) -> Metric:
        return self._add(Metric(f"{self.namespace}_{name}_total", help_text, "counter"))

    def gauge(self, name: str, help_text: str) -> Metric:
        return self._add(Metric(f"{self.namespace}_{name}", help_text, "gauge"))

    def on_collect(self, collector: Callable[[], None]) -> None:
        """Run ``collector`` before each render, to refresh gauges read from live state."""
        self._collectors.append(collector)

    def _add(self, metric: Metric) -> Metric:
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        for collect in self._collectors:
            collect()
        lines: list[str] = []
        for m in self._metrics:
            lines += [f"# HELP {m.name} {m.help}", f"# TYPE {m.name} {m.kind}"]
            for labels, value in sorted(m.values.items()) or [((), 0.0)]:
                text = ",".join(f'{k}="{v}"' for k, v in labels)
                number = repr(int(value)) if float(value).is_integer() else repr(float(value))
                lines.append(f"{m.name}{{{text}}} {number}" if text else f"{m.name} {number}")
        return "\n".join(lines) + "\n"
