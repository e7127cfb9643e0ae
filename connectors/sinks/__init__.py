"""Sink connectors: Kafka topics into warehouses and object stores."""
