"""The Prometheus text-format registry."""

from __future__ import annotations

from justchat.metrics import Metric, Registry


def test_counter_and_gauge_names() -> None:
    registry = Registry()
    assert registry.counter("frames", "h").name == "justchat_frames_total"
    assert registry.gauge("connections", "h").name == "justchat_connections"
    assert Registry("gw").counter("x", "h").name == "gw_x_total"


def test_counter_increments_per_label_set() -> None:
    counter = Registry().counter("requests", "requests served")
    counter.inc()
    counter.inc(2)
    counter.inc(kind="join")
    counter.inc(0.5, kind="join")
    assert counter.get() == 3.0
    assert counter.get(kind="join") == 1.5
    assert counter.get(kind="leave") == 0.0


def test_label_order_does_not_matter() -> None:
    metric = Metric("m", "h", "counter")
    metric.inc(a="1", b="2")
    metric.inc(b="2", a="1")
    assert metric.get(b="2", a="1") == 2.0
    assert list(metric.values) == [(("a", "1"), ("b", "2"))]


def test_gauge_set_replaces() -> None:
    gauge = Registry().gauge("open", "open things")
    gauge.set(5)
    gauge.set(3)
    gauge.set(1, shard="a")
    assert gauge.get() == 3.0
    assert gauge.get(shard="a") == 1.0


def test_render_text_format() -> None:
    registry = Registry()
    counter = registry.counter("announced", "announcements made")
    gauge = registry.gauge("connections", "open connections")
    counter.inc(kind="leave")
    counter.inc(3, kind="join")
    gauge.set(2.5)
    assert registry.render() == (
        "# HELP justchat_announced_total announcements made\n"
        "# TYPE justchat_announced_total counter\n"
        'justchat_announced_total{kind="join"} 3\n'
        'justchat_announced_total{kind="leave"} 1\n'
        "# HELP justchat_connections open connections\n"
        "# TYPE justchat_connections gauge\n"
        "justchat_connections 2.5\n"
    )


def test_render_multiple_labels_sorted() -> None:
    registry = Registry()
    counter = registry.counter("http", "h")
    counter.inc(status="200", route="/a", method="GET")
    assert 'justchat_http_total{method="GET",route="/a",status="200"} 1\n' in registry.render()


def test_a_metric_without_values_renders_zero() -> None:
    registry = Registry()
    registry.counter("never", "never incremented")
    assert registry.render().splitlines()[-1] == "justchat_never_total 0"


def test_empty_registry_renders_a_newline() -> None:
    assert Registry().render() == "\n"


def test_collectors_run_before_each_render() -> None:
    registry = Registry()
    gauge = registry.gauge("live", "live things")
    live = [1, 2]
    calls: list[int] = []

    def collect() -> None:
        calls.append(1)
        gauge.set(len(live))

    registry.on_collect(collect)
    assert "justchat_live 2\n" in registry.render()
    live.append(3)
    assert "justchat_live 3\n" in registry.render()
    assert len(calls) == 2


def test_fractional_values() -> None:
    registry = Registry()
    gauge = registry.gauge("load", "h")
    gauge.set(0.25)
    assert "justchat_load 0.25\n" in registry.render()


def rendered_value(text: str, name: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(f"{name} ")]
    return float(line.split(" ", 1)[1])


def test_large_counters_keep_every_digit() -> None:
    registry = Registry()
    counter = registry.counter("bytes", "h")
    counter.inc(1_234_567)
    assert rendered_value(registry.render(), "justchat_bytes_total") == 1_234_567
