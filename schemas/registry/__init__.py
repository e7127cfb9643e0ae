"""A Confluent-compatible Schema Registry whose only storage is a Kafka topic.

Modules: `routes` (REST API on aiohttp), `service` (what each operation means), `state` (in-memory view built from
the topic), `store` (the `_schemas` topic: create, load, follow, write-and-read-back), `records` (Confluent's
`_schemas` record format), `parsing` and `compatibility` (Avro via the `avro` package), `election` (primary),
`auth` (optional basic auth), `errors` (Confluent error codes), `config`, `server` (process lifecycle).

Several processes may run against one cluster. The primary is chosen by Kafka's group protocol: every process
joins one consumer group on the single-partition storage topic, and the member the coordinator assigns that
partition to is the primary (see `election`). Every process serves reads from its own copy of the topic.
Writes reaching a non-primary are FORWARDED to the primary, whose URL the others learn from the group's member
metadata in Kafka (the member's client.id); while no primary is elected (e.g. for `session.timeout.ms` after the
primary crashed) writes are answered 503 with error code 50004 and clients retry.

The election alone cannot stop a primary that was paused past its session timeout from writing after its successor
began: the primary therefore writes in transactions under one `transactional.id` per storage topic, and each newly
elected primary initialises it (fencing every older writer) and reads the topic to its end before minting an id. A
deposed primary's write fails with ProducerFenced and is answered 503 (50004), never as done (see `store`).
"""
