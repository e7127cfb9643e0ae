"""A record's path from its source to the warehouse, from the lineage headers on the topics and the sinks' rows."""
