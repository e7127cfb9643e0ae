"""A fake Amazon Comprehend for the enrichment benchmark: BatchDetectSentiment over JSON 1.1 (`X-Amz-Target`), in
the documented answer shape, after a fixed latency per call, so the benchmark measures Headwater and not a
service. `GET /_calls` answers how many API calls it took.

    .venv/bin/python bench/fake_comprehend.py --port P [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web

TARGET = "Comprehend_20171127.BatchDetectSentiment"
CALLS = web.AppKey("calls", list)


def sentiment(text: str) -> dict[str, object]:
    positive = 0.9 if any(word in text.lower() for word in ("great", "happy", "love", "thanks")) else 0.1
    return {
        "Sentiment": "POSITIVE" if positive > 0.5 else "NEUTRAL",
        "SentimentScore": {"Positive": positive, "Negative": 0.05, "Neutral": 0.9 - positive + 0.05, "Mixed": 0.0},
    }


def build(latency_s: float) -> web.Application:
    app = web.Application()
    app[CALLS] = [0]

    async def api(request: web.Request) -> web.Response:
        if request.headers.get("X-Amz-Target") != TARGET:
            body = {"__type": "UnknownOperationException", "message": request.headers.get("X-Amz-Target", "")}
            return web.json_response(body, status=400, content_type="application/x-amz-json-1.1")
        payload = json.loads(await request.read())
        app[CALLS][0] += 1
        await asyncio.sleep(latency_s)
        results = [{"Index": index, **sentiment(text)} for index, text in enumerate(payload["TextList"])]
        return web.json_response(
            {"ResultList": results, "ErrorList": []}, content_type="application/x-amz-json-1.1"
        )

    async def calls(request: web.Request) -> web.Response:
        return web.json_response({"calls": app[CALLS][0]})

    app.router.add_post("/", api)
    app.router.add_get("/_calls", calls)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    web.run_app(build(args.latency_ms / 1000), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
