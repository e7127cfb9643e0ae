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
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from pydantic import ValidationError

from streams.enrich import EnrichFailure, EnrichStage, build
from streams.enrich.base import Enriched, EnrichOutcome, Provider, ProviderStartError, ProviderUnavailable
from streams.enrich.local_model import LocalModelConfig, LocalModelProvider
from streams.enrich.local_worker import LocalWorker, LocalWorkerCrashed, ModelFactory
from streams.enrich.mlflow_model import PyfuncScorer
from streams.enrich.sentiment import DEFAULT_MAX_CHARS, SentimentProvider
from streams.runtime.config import load_pipeline

pytestmark = pytest.mark.asyncio(loop_scope="module")

HUGE_NOTES = "a ok " * 300_000  # 1.5 MB of VADER's worst case: hours of scoring, never finished
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _gone(pid: int) -> bool:
    """No such process, or only its zombie with every thread ended (its files closed: until the last thread ends, a
    killed process's leader is a zombie that still holds its pipes; a container's init may not reap orphans)."""
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        threads = len(list((proc / "task").iterdir()))
    except FileNotFoundError:
        return True
    return state == "Z" and threads == 1


async def _wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


class NeedsTwoArguments(Exception):
    """An exception pickle cannot rebuild (its constructor wants arguments it does not keep)."""

    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"{first} and {second}")


class LoadCounter:
    """A test model: counts its loads in its process and answers (pid, loads, whether huggingface_hub is offline),
    fails on 'boom', never finishes 'hang'."""

    loads = 0

    def __init__(self) -> None:
        LoadCounter.loads += 1

    def __call__(self, payload: str) -> tuple[int, int, bool]:
        from huggingface_hub import constants

        if payload == "boom":
            raise KeyError("boom")
        if payload == "unreadable":
            raise NeedsTwoArguments("one", "two")
        if payload == "crash":
            os._exit(3)
        if payload == "hang":
            time.sleep(3600)
        return os.getpid(), LoadCounter.loads, constants.HF_HUB_OFFLINE


class FailsToLoad:
    def __init__(self) -> None:
        raise OSError("weights file is truncated")

    def __call__(self, payload: Any) -> Any:
        return payload


class LoadsUntilRemoved:
    """A test model whose weights file can be removed while it runs, and which never finishes 'hang'."""

    def __init__(self, weights: Path) -> None:
        weights.read_bytes()

    def __call__(self, payload: str) -> str:
        if payload == "hang":
            time.sleep(3600)
        return payload


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def counter() -> AsyncIterator[LocalWorker]:
    worker = LocalWorker("counter", LoadCounter)
    await worker.start()
    yield worker
    await worker.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sentiment() -> AsyncIterator[Provider]:
    # no bound on the stage's side (it would cut texts to the default 8,000 characters): the provider itself must
    # survive being handed a huge text
    provider = build("sentiment", {"text_field": "notes", "timeout_seconds": 1.5, "max_chars": 10_000_000})
    await provider.start()
    yield provider
    await provider.close()


async def test_the_model_loads_once_in_its_own_offline_process(counter: LocalWorker) -> None:
    first = await counter.call("a")
    second = await counter.call("b")
    assert first[0] != os.getpid() and counter.pids == [first[0]]
    assert first == second, "the same process answers both, with the model loaded once"
    assert first[1] == 1 and first[2] is True


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


async def test_an_error_that_does_not_pickle_arrives_as_its_text(counter: LocalWorker) -> None:
    with pytest.raises(RuntimeError, match=r"^NeedsTwoArguments: one and two$"):
        await counter.call("unreadable")


async def test_a_process_dying_mid_call_fails_that_call_and_one_killed_while_idle_is_replaced(
    counter: LocalWorker,
) -> None:
    [first] = counter.pids
    with pytest.raises(LocalWorkerCrashed, match="model process exited"):
        await counter.call("crash")
    [second] = counter.pids
    assert second != first and await counter.call("after a crash")
    assert second is not None
    os.kill(second, 9)
    assert await _wait_until(lambda: _gone(second), 5)
    pid, loads, _ = await counter.call("after a kill")
    assert pid != second and loads == 1, "the call went to a fresh process instead of failing"


async def test_a_model_that_does_not_load_refuses_to_start_in_one_line() -> None:
    worker = LocalWorker("broken", FailsToLoad)
    with pytest.raises(ProviderStartError) as refused:
        await worker.start()
    assert str(refused.value) == "provider broken: cannot load model: OSError: weights file is truncated"
    await worker.close()


async def test_a_model_that_no_longer_loads_after_a_kill_is_an_outage_not_the_records_fault(tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"w")
    worker = LocalWorker("fragile", partial(LoadsUntilRemoved, weights))
    await worker.start()
    weights.unlink()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await worker.call("hang")
    with pytest.raises(ProviderUnavailable, match="provider fragile unavailable: cannot load model: FileNotFoundError"):
        await worker.call("next")
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
    assert time.monotonic() - started < sentiment.config.timeout_seconds + 1
    [failure] = failures
    assert isinstance(failure, EnrichFailure) and failure.error_class == "TimeoutError"
    assert "did not finish this record within 1.35s" in failure.message

    records: list[dict[str, Any]] = [{"notes": "I love it"}, {"notes": HUGE_NOTES}, {"notes": "This is awful"}]
    failures, _ = await stage.run(records)
    assert [type(failure).__name__ for failure in failures] == ["NoneType", "EnrichFailure", "NoneType"]
    assert records[0]["sentiment"] > 0 > records[2]["sentiment"]

    later: list[dict[str, Any]] = [{"notes": "Wonderful support"}]
    assert (await stage.run(later))[0] == [None] and later[0]["sentiment"] > 0


async def test_a_batch_of_only_huge_texts_is_dead_lettered_not_an_outage(sentiment: Provider) -> None:
    """Every record of a step timing out looks like a provider outage (the pipeline would pause and retry the same
    batch for ever); for a local model it is the records' own cost, so each is its own failure."""
    failures, _ = await EnrichStage([sentiment]).run([{"notes": HUGE_NOTES}, {"notes": HUGE_NOTES + "!"}])
    assert all(isinstance(failure, EnrichFailure) and not failure.unreachable for failure in failures)


class SlowToLoad:
    """A test model that takes a second to load, then echoes."""

    def __init__(self) -> None:
        time.sleep(1)

    def __call__(self, payload: Any) -> Any:
        return payload


class Echo(LocalModelProvider):
    name = "echo"

    def model_factory(self) -> ModelFactory:
        return SlowToLoad

    def payload(self, batch: Sequence[Mapping[str, Any]]) -> list[Any]:
        return [record.get("text") for record in batch]

    def outcomes(self, batch: Sequence[Mapping[str, Any]], answer: list[Any]) -> list[EnrichOutcome]:
        return [Enriched({"echo": text}) for text in answer]

    @property
    def model(self) -> str:
        return "echo"

    def input_fields(self) -> list[str]:
        return ["text"]

    def output_fields(self) -> list[str]:
        return ["echo"]


async def test_a_deadline_passing_while_the_model_loads_is_no_records_fault() -> None:
    """Not started, the first call waits for the model: its timeout is raised (a slow provider, the stage's
    business), not the record's failure; the model goes on loading and answers the next call."""
    echo = Echo(LocalModelConfig.model_validate({"timeout_seconds": 0.5}))
    with pytest.raises(TimeoutError):
        await echo.enrich([{"text": "first"}])
    deadline = time.monotonic() + 10
    while True:
        try:
            outcomes = await echo.enrich([{"text": "again"}])
            break
        except TimeoutError:
            assert time.monotonic() < deadline, "the model never finished loading"
    await echo.close()
    assert outcomes == [Enriched({"echo": "again"})]
    assert echo.worker.restarts == 0, "waiting for a model to load never kills it"


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


def _example_step(name: str, index: int = 0, **options: Any) -> tuple[Provider, set[str]]:
    """An example pipeline's enrichment step (with options replaced) and its output schema's field names."""
    config = load_pipeline(EXAMPLES / name)
    step = config.enrich[index]
    schema_fields = {field["name"] for field in config.load_schema(config.output.schema_)["fields"]}
    return build(step.provider, {**step.options, **options}), schema_fields


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
    provider, schema_fields = _example_step("enrich-huggingface.yaml", 0, model_path=str(model2vec_dirs[0]))
    assert provider.output_fields() == ["notes_embedding"] and "notes_embedding" in schema_fields
    await provider.start()
    records: list[dict[str, Any]] = [{"notes": "good the"}, {"notes": "awful"}, {"notes": ""}, {}]
    failures, _ = await EnrichStage([provider]).run(records)
    await provider.close()
    assert failures == [None] * 4
    assert records[0]["notes_embedding"] == pytest.approx([0.55, 0.05]) and records[1]["notes_embedding"] == [0, 1]
    assert all(type(value) is float for value in records[0]["notes_embedding"])
    assert records[2]["notes_embedding"] is None and records[3]["notes_embedding"] is None
    assert provider.model.startswith(f"model2vec/{model2vec_dirs[0].name}@")


async def test_huggingface_classification_writes_the_label_and_its_probability(
    model2vec_dirs: tuple[Path, Path],
) -> None:
    provider, schema_fields = _example_step("enrich-huggingface.yaml", 1, model_path=str(model2vec_dirs[1]))
    assert provider.output_fields() == ["notes_tone", "notes_tone_score"]
    assert set(provider.output_fields()) <= schema_fields
    await provider.start()
    records: list[dict[str, Any]] = [{"notes": "great"}, {"notes": "the bad"}, {"notes": None}]
    failures, _ = await EnrichStage([provider]).run(records)
    await provider.close()
    assert failures == [None] * 3
    assert records[0]["notes_tone"] == "positive"
    assert records[0]["notes_tone_score"] == pytest.approx(0.993307, abs=1e-5)
    assert records[1]["notes_tone"] == "negative"
    assert records[2] == {"notes": None, "notes_tone": None, "notes_tone_score": None}


async def test_huggingface_refuses_a_path_that_is_not_a_model_directory(
    model2vec_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    for path in (tmp_path / "absent", model2vec_dirs[0] / "config.json"):
        provider = build("huggingface", {"model_path": str(path), "task": "embeddings", "text_field": "notes"})
        assert provider.output_fields() == ["embedding"]
        with pytest.raises(ProviderStartError, match=r"model_path .* is not a directory \(models are never"):
            await provider.start()
    with pytest.raises(ValidationError, match="score_field is for task classification"):
        build("huggingface", {"model_path": str(tmp_path), "task": "embeddings", "text_field": "notes",
                              "score_field": "s"})
    headless = build("huggingface", {"model_path": str(model2vec_dirs[0]), "task": "classification",
                                     "text_field": "notes"})
    assert headless.output_fields() == ["label"]
    with pytest.raises(ProviderStartError, match="cannot load model: FileNotFoundError: Head file does not exist"):
        await headless.start()


LATE_PAYMENT_MODEL = '''
import mlflow.models
import mlflow.pyfunc
import pandas as pd


class LatePayment(mlflow.pyfunc.PythonModel):
    def predict(self, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if (model_input["amount"] < 0).any():
            raise ValueError("negative amount")
        risk = (model_input["amount"] / 10_000).clip(upper=1.0)
        review = [bool(r > 0.5 or country not in ("DE", "FR"))
                  for r, country in zip(risk, model_input["shipping_address.country"])]
        return pd.DataFrame({"risk": risk, "review": review})


mlflow.models.set_model(LatePayment())
'''

ARRAY_MODEL = '''
import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd


class Doubles(mlflow.pyfunc.PythonModel):
    """An array answer, as scikit-learn models give: 1-D for one input column, one column per input otherwise."""

    def predict(self, model_input: pd.DataFrame, params=None) -> np.ndarray:
        doubled = model_input.to_numpy() * 2
        return doubled[:, 0] if doubled.shape[1] == 1 else doubled


mlflow.models.set_model(Doubles())
'''


@pytest.fixture(scope="module")
def mlflow_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The late-payment model `examples/enrich-mlflow.yaml` expects, and a model answering arrays; saved from code
    (no pickled class)."""
    import mlflow.pyfunc

    root = tmp_path_factory.mktemp("mlflow")
    for name, code in (("late-payment", LATE_PAYMENT_MODEL), ("doubles", ARRAY_MODEL)):
        (root / f"{name}.py").write_text(code)
        mlflow.pyfunc.save_model(str(root / name), python_model=str(root / f"{name}.py"), pip_requirements=["pandas"])
    return root / "late-payment", root / "doubles"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def late_payment(mlflow_models: tuple[Path, Path]) -> AsyncIterator[Provider]:
    provider, schema_fields = _example_step("enrich-mlflow.yaml", model_uri=mlflow_models[0].as_uri())
    assert set(provider.output_fields()) <= schema_fields
    await provider.start()
    yield provider
    await provider.close()


def _order(amount: float, country: str | None) -> dict[str, Any]:
    return {"order_number": "SO-1", "amount": amount, "currency": "EUR", "shipping_address": {"country": country}}


async def test_mlflow_scores_a_batch_and_maps_prediction_columns_to_output_fields(late_payment: Provider) -> None:
    records = [_order(1500, "DE"), _order(8000, "FR"), _order(100, "US")]
    failures, _ = await EnrichStage([late_payment]).run(records)
    assert failures == [None] * 3
    assert [(r["late_payment_risk"], r["needs_review"]) for r in records] == [
        (0.15, False), (0.8, True), (0.01, True)
    ]
    assert type(records[0]["needs_review"]) is bool, "numpy values are plain Python values"
    assert late_payment.model.startswith("mlflow/late-payment@") and len(late_payment.model.split("@")[1]) > 10


async def test_an_mlflow_model_error_fails_only_its_record(late_payment: Provider) -> None:
    records = [_order(amount, "DE") for amount in (100, -5, 300)]
    failures, _ = await EnrichStage([late_payment]).run(records)
    assert failures[0] is None and failures[2] is None
    assert isinstance(failures[1], EnrichFailure) and failures[1].error_class == "ValueError"
    assert "negative amount" in failures[1].message
    assert records[0]["late_payment_risk"] == 0.01 and records[2]["late_payment_risk"] == 0.03


async def test_array_predictions_fill_one_output_or_several_by_position(mlflow_models: tuple[Path, Path]) -> None:
    """The scorer the model process runs, loaded here: a 1-D answer fills the only output, a 2-D one each."""
    one = PyfuncScorer(mlflow_models[1], ["amount"], ["doubled"], {})
    assert one([[1.5], [float("nan")]]) == [{"doubled": 3.0}, {"doubled": None}]
    two = PyfuncScorer(mlflow_models[1], ["a", "b"], ["a2", "b2"], {})
    assert two([[1, 2], [3, 4]]) == [{"a2": 2, "b2": 4}, {"a2": 6, "b2": 8}]
    with pytest.raises(ValueError, match="do not have 3 values"):
        PyfuncScorer(mlflow_models[1], ["a", "b"], ["x", "y", "z"], {})([[1, 2]])


async def test_mlflow_refuses_remote_uris_and_a_directory_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="model_uri models:/deals/1 is not local"):
        build("mlflow", {"model_uri": "models:/deals/1", "input_fields": ["a"], "output_fields": ["b"]})
    with pytest.raises(ValidationError, match="output_columns names fields not in output_fields: c"):
        build("mlflow", {"model_uri": str(tmp_path), "input_fields": ["a"], "output_fields": ["b"],
                         "output_columns": {"c": "x"}})
    empty = build("mlflow", {"model_uri": str(tmp_path), "input_fields": ["a"], "output_fields": ["b"]})
    with pytest.raises(ProviderStartError, match=r"no MLflow model at .* \(no MLmodel file there\)"):
        await empty.start()
