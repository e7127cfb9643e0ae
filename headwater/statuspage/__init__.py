"""The status page every long-running process serves (`/`, `/status`, `/status.json`) and `headwater ui` serves for
a whole deployment: pipelines, connectors and the registry, read from Prometheus metrics by name (the kernel does not
import the parts that define them)."""
