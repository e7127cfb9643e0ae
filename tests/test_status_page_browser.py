"""The status page in a real browser (Debian's chromium, driven by Playwright) during a real pipeline run on the
session broker and registry: it shows records moving, and once the input is processed every figure on it equals the
one scraped from the same process's /metrics at that moment. A screenshot is saved in the test's tmp dir."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, async_playwright

from headwater.ports import free_port
from headwater.settings import load_settings
from headwater.statuspage.samples import Sample, parse_exposition
from streams.runtime.config import load_pipeline
from streams.runtime.runner import DirectRuntime
from tests.fixtures.kafka import KafkaService
from tests.fixtures.registry import RegistryService
from tests.pipeline_support import contact, encoder, pipeline_file, produce_values

CHROMIUM = Path("/usr/bin/chromium")
GOOD = 300


def total(samples: list[Sample], name: str, match: Callable[[dict[str, str]], bool]) -> int:
    return int(sum(sample.value for sample in samples if sample.name == name and match(sample.labels)))


async def figure(page: Page, pipeline: str, field: str) -> str | None:
    return await page.get_attribute(f'[data-pipeline="{pipeline}"] [data-field="{field}"]', "data-value")


async def wait_until(check: Callable[[], bool], what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="`make setup` installs Debian's chromium")
async def test_the_page_shows_the_run_and_its_figures_equal_the_metrics(
    kafka: KafkaService, registry: RegistryService, tmp_path: Path
) -> None:
    raw = kafka.create_topic(partitions=2)
    domain, entity = raw.split(".")[:2]
    kafka.create_topic(f"{domain}.{entity}.enriched", partitions=2)
    serializer = encoder(registry.client(), raw)
    items: list[tuple[bytes, bytes | None]] = [
        (f"C{n}".encode(), serializer.encode(contact(n, account_id="not-a-number" if n % 50 == 0 else f"{n}")))
        for n in range(GOOD)
    ]
    items += [(b"bad-1", b"definitely not avro"), (b"bad-2", b"neither is this")]
    config = load_pipeline(pipeline_file(
        tmp_path, raw, enrich=[{"provider": "sentiment", "options": {"text_field": "notes"}}],
        batch={"size": 50, "linger_ms": 20}, quality=None,  # no suite: a faster start, dead letters come anyway
    ))
    name = config.label
    settings = load_settings(kafka={"bootstrap.servers": kafka.bootstrap}, registry={"url": registry.url})
    port = free_port()
    runtime = DirectRuntime([config], settings, status_port=port)
    stop = asyncio.Event()
    running = asyncio.create_task(runtime.run(stop))
    try:
        async with async_playwright() as playwright:
            # The browser starts while the pipeline does; only then is the pipeline waited for.
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
            try:
                await wait_until(lambda: runtime.pipelines[0].ready or running.done(), "the pipeline never got ready")
                assert not running.done(), running.exception()
                page = await browser.new_page(viewport={"width": 1200, "height": 900})
                await page.goto(f"http://127.0.0.1:{port}/status")
                # The pipeline is on the page, idle, before any input exists: the records seen next are moving.
                await page.wait_for_selector(f'[data-pipeline="{name}"] [data-field="records_in"][data-value="0"]')
                await asyncio.to_thread(produce_values, kafka.bootstrap, raw, items)
                await page.wait_for_function(
                    """([name]) => {
                        const figure = (field) => document.querySelector(
                            `[data-pipeline="${name}"] [data-field="${field}"]`)?.dataset.value;
                        return Number(figure("records_in")) > 0 && Number(figure("records_per_second")) > 0;
                    }""", arg=[name], timeout=30_000)
                await page.wait_for_selector(
                    f'[data-pipeline="{name}"] [data-field="records_in"][data-value="{len(items)}"]', timeout=30_000
                )
                # consumer lag per input partition, once the worker has measured it
                await page.wait_for_function(
                    """([name]) => document.querySelectorAll(
                        `[data-pipeline="${name}"] [data-table="lag"] tbody tr`).length === 2""",
                    arg=[name], timeout=30_000)
                lag_rows = await page.locator(f'[data-pipeline="{name}"] [data-table="lag"] tbody tr') \
                    .all_inner_texts()
                # Counters, histogram and dead letters of a batch are counted together, so once records in has
                # reached the input's size the figures stand still and one scrape is the figures' moment.
                async with httpx.AsyncClient(timeout=5) as client:
                    scraped = parse_exposition((await client.get(f"http://127.0.0.1:{port}/metrics")).text)
                shown = {field: await figure(page, name, field) for field in
                         ("records_in", "records_out", "dead_letters", "latency_p50_ms", "latency_p99_ms")}
                reasons = await page.locator(f'[data-pipeline="{name}"] [data-table="dead_letters"] tbody tr') \
                    .all_inner_texts()
                enrichment = await page.locator(f'[data-pipeline="{name}"] [data-table="enrichment"] tbody tr') \
                    .all_inner_texts()
                subjects = await page.locator('[data-table="registry"] tbody tr').all_inner_texts()
                screenshot = tmp_path / "status-page.png"
                await page.screenshot(path=str(screenshot), full_page=True)
            finally:
                await browser.close()
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)

    def of(labels: dict[str, str]) -> bool:
        return labels.get("pipeline") == name

    def records(outcome: str) -> int:
        return total(scraped, "headwater_pipeline_records_total",
                     lambda labels: of(labels) and labels["outcome"] == outcome)

    assert shown["records_in"] == str(records("in")) == str(len(items))
    assert shown["records_out"] == str(records("out"))
    assert shown["dead_letters"] == str(records("dead_letter")) == str(2 + GOOD // 50)
    # p50/p99 from the same histogram buckets, within one bucket's interpolation
    buckets = sorted((float(sample.labels["le"]), sample.value) for sample in scraped
                     if sample.name == "headwater_pipeline_end_to_end_latency_seconds_bucket" and of(sample.labels))
    count = buckets[-1][1]
    for field, quantile in (("latency_p50_ms", 0.5), ("latency_p99_ms", 0.99)):
        upper = next(bound for bound, cumulative in buckets if cumulative >= quantile * count)
        lower = max([0.0] + [bound for bound, cumulative in buckets if cumulative < quantile * count])
        assert shown[field] is not None and lower * 1000 <= float(shown[field]) <= upper * 1000, (field, shown)
    dead = "headwater_pipeline_dead_letters_total"
    assert sorted(reasons) == sorted(
        f"{sample.labels['stage']}\t{sample.labels['reason']}\t{int(sample.value):,}"
        for sample in scraped if sample.name == dead and of(sample.labels) and sample.value > 0
    )
    calls = total(scraped, "headwater_enrich_calls_total", of)
    hits = total(scraped, "headwater_enrich_cache_hits_total", of)
    assert calls > 0
    assert enrichment == [f"sentiment\t{calls:,}\t0\t{hits:,}\t0.0000\t"]
    assert f"{raw}-value\t1" in subjects
    lag = "headwater_pipeline_consumer_lag_records"
    assert [row.split("\t")[:2] for row in lag_rows] == [[raw, "0"], [raw, "1"]]
    assert sorted((sample.labels["topic"], sample.labels["partition"]) for sample in scraped
                  if sample.name == lag and of(sample.labels)) == [(raw, "0"), (raw, "1")]
    assert screenshot.stat().st_size > 10_000
