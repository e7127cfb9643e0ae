"""Replays: the current pipeline over an exact range of its input (or over dead letters), written once to a side
topic or the live one, resumable, compared with the live output and promoted into it."""
