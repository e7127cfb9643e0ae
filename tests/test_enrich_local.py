"""Local models in their child processes: a call past its deadline is killed with its process and the next call goes
to a fresh one, the model loads once per process and never from the network, shutdown is prompt even mid-call; the
sentiment bound; huggingface (model2vec embeddings and classification) and mlflow (pyfunc) on models the tests build
in tmp_path."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from pydantic import ValidationError

from streams.enrich import EnrichFailure, EnrichStage, build
from streams.enrich.base import Enriched, Provider, ProviderStartError
from streams.enrich.local_worker import LocalWorker, LocalWorkerCrashed
from streams.enrich.sentiment import DEFAULT_MAX_CHARS, SentimentProvider

pytestmark = pytest.mark.asyncio(loop_scope="module")

HUGE_NOTES = "a ok " * 300_000  # 1.5 MB of VADER's worst case: hours of scoring, never finished
ROOT = Path(__file__).resolve().parent.parent


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (a container's init may not reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def _wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


class LoadCounter:
    """A test model: counts its loads in its process and answers (pid, loads, HF_HUB_OFFLINE), or fails on 'boom'."""

    loads = 0

    def __init__(self) -> None:
        LoadCounter.loads += 1

    def __call__(self, payload: str) -> tuple[int, int, str | None]:
        if payload == "boom":
            raise KeyError("boom")
        if payload == "hang":
            time.sleep(3600)
        return os.getpid(), LoadCounter.loads, os.environ.get("HF_HUB_OFFLINE")


class FailsToLoad:
    def __init__(self) -> None:
        raise OSError("weights file is truncated")

    def __call__(self, payload: Any) -> Any:
        return payload


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def counter() -> AsyncIterator[LocalWorker]:
    worker = LocalWorker("counter", LoadCounter)
    await worker.start()
    yield worker
    await worker.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sentiment() -> AsyncIterator[Provider]:
    provider = build("sentiment", {"text_field": "notes", "timeout_seconds": 2.0})
    await provider.start()
    yield provider
    await provider.close()


async def test_the_model_loads_once_in_its_own_offline_process(counter: LocalWorker) -> None:
    first = await counter.call("a")
    second = await counter.call("b")
    assert first[0] != os.getpid() and counter.pids == [first[0]]
    assert first == second, "the same process answers both, with the model loaded once"
    assert first[1] == 1 and first[2] == "1"


async def test_a_cancelled_call_kills_its_process_and_the_next_call_gets_a_fresh_one(counter: LocalWorker) -> None:
    [stuck] = counter.pids
    assert stuck is not None
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await counter.call("hang")
    assert time.monotonic() - started < 1.5, "cancellation returns at once, without waiting for the model"
    assert _gone(stuck), "the process running the stuck call was killed"
    pid, loads, _ = await counter.call("after")
    assert pid not in (stuck, os.getpid()) and loads == 1, "a fresh process, which loaded the model once"
    assert counter.restarts == 1


async def test_a_model_error_is_the_call_error_and_the_process_keeps_serving(counter: LocalWorker) -> None:
    [before] = counter.pids
    with pytest.raises(KeyError, match="boom"):
        await counter.call("boom")
    assert (await counter.call("next"))[0] == before


async def test_a_model_that_does_not_load_refuses_to_start_in_one_line() -> None:
    worker = LocalWorker("broken", FailsToLoad)
    with pytest.raises(ProviderStartError) as refused:
        await worker.start()
    assert str(refused.value) == "provider broken: cannot load model: OSError: weights file is truncated"
    await worker.close()


async def test_sentiment_and_language_answer_from_child_processes(sentiment: Provider) -> None:
    language = build("language", {"text_field": "notes", "output_field": "lang"})
    await language.start()
    records: list[dict[str, Any]] = [{"notes": "Great call, they love the product and will recommend us!"},
               {"notes": "Der Kunde ist sehr unzufrieden mit der Lieferung und möchte sein Geld zurück."},
               {"notes": None}]
    failures, _ = await EnrichStage([sentiment, language]).run(records)
    await language.close()
    assert failures == [None] * 3
    assert records[0]["sentiment"] > 0.5 and records[0]["lang"] == "en"
    assert records[1]["lang"] == "de"
    assert records[2]["sentiment"] is None and records[2]["lang"] is None


async def test_sentiments_default_bound_keeps_its_worst_case_well_inside_the_default_timeout() -> None:
    provider = build("sentiment", {"text_field": "notes"})
    assert provider.config.max_chars is None and provider.default_max_chars == DEFAULT_MAX_CHARS
    await provider.start()
    started = time.monotonic()
    [outcome] = await provider.enrich([{"notes": HUGE_NOTES[:DEFAULT_MAX_CHARS]}])
    took = time.monotonic() - started
    await provider.close()
    assert isinstance(outcome, Enriched) and outcome.fields["sentiment"] > 0
    assert took < provider.config.timeout_seconds / 2, f"worst case at the bound took {took:.1f}s"


async def test_a_huge_text_fails_alone_with_a_timeout_and_the_next_call_is_scored(sentiment: Provider) -> None:
    """The stage hands the provider a 1.5 MB text (no max_chars applied): the call is abandoned at its deadline and
    its process killed, so the records around it and the next call are scored."""
    stage = EnrichStage([sentiment])
    started = time.monotonic()
    failures, _ = await stage.run([{"notes": HUGE_NOTES}])
    assert time.monotonic() - started < sentiment.config.timeout_seconds + 1.5
    [failure] = failures
    assert isinstance(failure, EnrichFailure) and failure.error_class == "TimeoutError"

    records: list[dict[str, Any]] = [{"notes": "I love it"}, {"notes": HUGE_NOTES}, {"notes": "This is awful"}]
    failures, _ = await stage.run(records)
    assert [type(failure).__name__ for failure in failures] == ["NoneType", "EnrichFailure", "NoneType"]
    assert records[0]["sentiment"] > 0 > records[2]["sentiment"]

    later: list[dict[str, Any]] = [{"notes": "Wonderful support"}]
    assert (await stage.run(later))[0] == [None] and later[0]["sentiment"] > 0


async def test_close_stops_a_process_stuck_in_a_call_within_two_seconds() -> None:
    provider = build("sentiment", {"text_field": "notes"})
    assert isinstance(provider, SentimentProvider)
    await provider.start()
    [pid] = provider.worker.pids
    assert pid is not None
    call = asyncio.create_task(provider.enrich([{"notes": HUGE_NOTES}]))
    await asyncio.sleep(0)  # the call runs up to its first suspension: the text is sent, the answer awaited
    started = time.monotonic()
    await provider.close()
    assert time.monotonic() - started < 2
    with pytest.raises(LocalWorkerCrashed):
        await call
    assert _gone(pid)


async def test_a_model_process_exits_when_its_pipeline_process_is_killed() -> None:
    """SIGKILL gives the pipeline process no chance to stop its children: they notice and exit by themselves."""
    script = textwrap.dedent("""
        import asyncio
        from streams.enrich import build

        async def main():
            provider = build("sentiment", {"text_field": "notes", "timeout_seconds": 3600})
            await provider.start()
            call = asyncio.create_task(provider.enrich([{"notes": "a ok " * 300_000}]))
            await asyncio.sleep(0)
            print(provider.worker.pids[0], flush=True)
            await call

        asyncio.run(main())
    """)
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:
        assert parent.stdout is not None
        child = int(await asyncio.wait_for(parent.stdout.readline(), 60))
        assert not _gone(child)
    finally:
        parent.kill()
        await parent.wait()
    assert await _wait_until(lambda: _gone(child), 5), "the orphaned model process exited by itself"


def _tokenizer(words: list[str]) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({word: index for index, word in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return tokenizer


@pytest.fixture(scope="module")
def model2vec_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 2-dimensional static model (positive words on the first axis, negative ones on the second) and the same
    model with a softmax head reading the axes as `positive`/`negative`."""
    from model2vec import StaticModel
    from model2vec.inference import StaticModelPipeline
    from model2vec.inference.mlp import Activation, Layer, MLPHead

    words = ["[UNK]", "[PAD]", "good", "great", "bad", "awful", "the"]
    vectors = np.array([[0, 0], [0, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0.1, 0.1]], dtype=np.float32)
    static = StaticModel(vectors=vectors, tokenizer=_tokenizer(words))
    embeddings, classifier = tmp_path_factory.mktemp("tiny-m2v"), tmp_path_factory.mktemp("tiny-m2v-classifier")
    static.save_pretrained(embeddings)
    head = MLPHead([Layer(np.eye(2, dtype=np.float32) * 5, np.zeros(2, dtype=np.float32))], Activation.SOFTMAX,
                   np.array(["positive", "negative"]))
    StaticModelPipeline(static, head).save_pretrained(str(classifier))
    return embeddings, classifier


async def test_huggingface_embeddings_are_float_lists_of_the_local_model(model2vec_dirs: tuple[Path, Path]) -> None:
    provider = build("huggingface", {"model_path": str(model2vec_dirs[0]), "task": "embeddings",
                                     "text_field": "notes", "output_field": "notes_vector"})
    await provider.start()
    records: list[dict[str, Any]] = [{"notes": "good the"}, {"notes": "awful"}, {"notes": ""}, {}]
    failures, _ = await EnrichStage([provider]).run(records)
    await provider.close()
    assert failures == [None] * 4
    assert records[0]["notes_vector"] == pytest.approx([0.55, 0.05]) and records[1]["notes_vector"] == [0.0, 1.0]
    assert all(isinstance(value, float) for value in records[0]["notes_vector"])
    assert records[2]["notes_vector"] is None and records[3]["notes_vector"] is None
    assert provider.output_fields() == ["notes_vector"]
    assert provider.model.startswith(f"model2vec/{model2vec_dirs[0].name}@")


async def test_huggingface_classification_writes_the_label_and_its_probability(
    model2vec_dirs: tuple[Path, Path],
) -> None:
    provider = build("huggingface", {"model_path": str(model2vec_dirs[1]), "task": "classification",
                                     "text_field": "notes", "output_field": "tone", "score_field": "tone_score"})
    assert provider.output_fields() == ["tone", "tone_score"]
    await provider.start()
    records: list[dict[str, Any]] = [{"notes": "great"}, {"notes": "the bad"}, {"notes": None}]
    failures, _ = await EnrichStage([provider]).run(records)
    await provider.close()
    assert failures == [None] * 3
    assert records[0]["tone"] == "positive" and records[0]["tone_score"] == pytest.approx(0.993307, abs=1e-5)
    assert records[1]["tone"] == "negative"
    assert records[2] == {"notes": None, "tone": None, "tone_score": None}


async def test_huggingface_refuses_a_path_that_is_not_a_model_directory(
    model2vec_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    for path in (tmp_path / "absent", model2vec_dirs[0] / "config.json"):
        provider = build("huggingface", {"model_path": str(path), "task": "embeddings", "text_field": "notes"})
        with pytest.raises(ProviderStartError, match=r"model_path .* is not a directory \(models are never"):
            await provider.start()
    headless = build("huggingface", {"model_path": str(model2vec_dirs[0]), "task": "classification",
                                     "text_field": "notes"})
    with pytest.raises(ProviderStartError, match="cannot load model: FileNotFoundError: Head file does not exist"):
        await headless.start()


MLFLOW_MODEL = '''
import mlflow.models
import mlflow.pyfunc
import pandas as pd


class Deals(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if (model_input["amount"] < 0).any():
            raise ValueError("negative amount")
        doubled = model_input["amount"] * 2
        return pd.DataFrame({
            "double": doubled,
            "tier": ["gold" if region == "eu" and amount > 100 else "std"
                     for region, amount in zip(model_input["account.region"], model_input["amount"])],
        })


mlflow.models.set_model(Deals())
'''


@pytest.fixture(scope="module")
def mlflow_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pyfunc model saved from code (no pickled class), doubling `amount` and tiering by region."""
    import mlflow.pyfunc

    root = tmp_path_factory.mktemp("mlflow")
    (root / "deals.py").write_text(MLFLOW_MODEL)
    mlflow.pyfunc.save_model(str(root / "deals"), python_model=str(root / "deals.py"), pip_requirements=["pandas"])
    return root / "deals"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def deals(mlflow_model_dir: Path) -> AsyncIterator[Provider]:
    provider = build("mlflow", {
        "model_uri": mlflow_model_dir.as_uri(), "input_fields": ["amount", "account.region"],
        "output_fields": ["amount_doubled", "tier"], "output_columns": {"amount_doubled": "double"},
        "batch_size": 50,
    })
    await provider.start()
    yield provider
    await provider.close()


async def test_mlflow_scores_a_batch_and_maps_prediction_columns_to_output_fields(
    deals: Provider, mlflow_model_dir: Path
) -> None:
    records: list[dict[str, Any]] = [
        {"amount": 150, "account": {"region": "eu"}}, {"amount": 20, "account": {"region": "us"}}
    ]
    failures, _ = await EnrichStage([deals]).run(records)
    assert failures == [None, None]
    assert [(r["amount_doubled"], r["tier"]) for r in records] == [(300, "gold"), (40, "std")]
    assert isinstance(records[0]["amount_doubled"], int), "numpy values are plain Python values"
    uuid = deals.model.split("@")[1]
    assert deals.model.startswith("mlflow/deals@") and len(uuid) > 10


async def test_an_mlflow_model_error_fails_only_its_record(deals: Provider) -> None:
    records: list[dict[str, Any]] = [{"amount": amount, "account": {"region": "eu"}} for amount in (1, -5, 3)]
    failures, _ = await EnrichStage([deals]).run(records)
    assert failures[0] is None and failures[2] is None
    assert isinstance(failures[1], EnrichFailure) and failures[1].error_class == "ValueError"
    assert "negative amount" in failures[1].message
    assert records[0]["amount_doubled"] == 2 and records[2]["amount_doubled"] == 6


async def test_mlflow_refuses_remote_uris_and_a_directory_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="model_uri models:/deals/1 is not local"):
        build("mlflow", {"model_uri": "models:/deals/1", "input_fields": ["a"], "output_fields": ["b"]})
    with pytest.raises(ValidationError, match="output_columns names fields not in output_fields: c"):
        build("mlflow", {"model_uri": str(tmp_path), "input_fields": ["a"], "output_fields": ["b"],
                         "output_columns": {"c": "x"}})
    empty = build("mlflow", {"model_uri": str(tmp_path), "input_fields": ["a"], "output_fields": ["b"]})
    with pytest.raises(ProviderStartError, match=r"no MLflow model at .* \(no MLmodel file there\)"):
        await empty.start()
