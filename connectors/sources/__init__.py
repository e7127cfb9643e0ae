"""Source connectors: CRMs, ERPs and HTTP ingest into Kafka topics."""
