"""The dead-letter repair loop: what failed and why (`summary`, `show`), and re-running dead letters through the
current pipeline after a fix (`replay`), with `hw-replay-of` naming the dead letter each record came from."""
