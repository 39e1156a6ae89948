"""Sends one small trace to berth-viz with Python's OpenTelemetry SDK, an exporter
berth did not write. Used by viz/tests/foreign_python.rs; `cargo xtask setup` makes the
virtual environment it runs in (target/viz-otel-venv).

Usage: export_spans.py ENDPOINT [gzip]   (ENDPOINT like http://127.0.0.1:4318)
Prints the trace id, as 32 hex digits.
"""

import os
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

endpoint = sys.argv[1]
compression = Compression.Gzip if "gzip" in sys.argv[2:] else Compression.NoCompression

provider = TracerProvider(
    resource=Resource.create({"service.name": "python-shop", "process.pid": os.getpid()})
)
provider.add_span_processor(
    SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", compression=compression, timeout=10)
    )
)
tracer = provider.get_tracer("berth-viz-foreign-test")

with tracer.start_as_current_span("checkout", attributes={"cart.items": 3}) as root:
    with tracer.start_as_current_span("reserve stock") as child:
        child.add_event("stock reserved", {"sku": "busybox-1"})
    with tracer.start_as_current_span("charge card") as failed:
        failed.set_status(Status(StatusCode.ERROR, "card declined"))
    trace_id = format(root.get_span_context().trace_id, "032x")

provider.shutdown()  # the simple processor has exported each span as it ended
print(trace_id)
