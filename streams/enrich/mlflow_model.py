"""An MLflow pyfunc model from a local model directory (mlflow-skinny loads pyfunc models on its own), scored per
batch with a pandas DataFrame of the input fields, in a child process (`local_worker`) so a call past its deadline
is killed with its process. The model runs in Headwater's own environment (no conda or virtualenv is built for it):
its requirements must be installed beside Headwater."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import yaml
from pydantic import Field, field_validator, model_validator

from headwater import fields
from streams.enrich import provider_index
from streams.enrich.base import Enriched, EnrichOutcome, ProviderStartError
from streams.enrich.local_model import LocalModelConfig, LocalModelProvider
from streams.enrich.local_worker import ModelFactory

if TYPE_CHECKING:
    from mlflow.pyfunc import PyFuncModel


class MlflowConfig(LocalModelConfig):
    model_uri: str = Field(
        description="Local directory of the saved pyfunc model (the one holding `MLmodel`), as a path or a "
        "`file://` URI; registry and remote URIs (`models:/`, `runs:/`, `s3://`) are refused: nothing is downloaded."
    )
    input_fields: list[str] = Field(
        min_length=1, description="Dotted paths read into the model's DataFrame, one column each, named by the path."
    )
    output_fields: list[str] = Field(
        min_length=1,
        description="Fields written. A DataFrame prediction fills each from its column of the same name (or the "
        "one `output_columns` names); a single-column prediction (a Series, a 1-D array, a list) fills the only one; "
        "a 2-D array fills them by position.",
    )
    output_columns: dict[str, str] = Field(
        default_factory=dict, description="Output field -> prediction column, where the names differ."
    )

    @field_validator("model_uri")
    @classmethod
    def _local(cls, model_uri: str) -> str:
        local_model_dir(model_uri)
        return model_uri

    @model_validator(mode="after")
    def _columns_name_outputs(self) -> MlflowConfig:
        unknown = sorted(set(self.output_columns) - set(self.output_fields))
        if unknown:
            raise ValueError(f"output_columns names fields not in output_fields: {', '.join(unknown)}")
        return self


def local_model_dir(model_uri: str) -> Path:
    """The directory a local model URI names; `ValueError` for a URI that would fetch from elsewhere."""
    parsed = urlparse(model_uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise ValueError(f"model_uri {model_uri} is not local (only a directory path or file:// URI)")
    return Path(model_uri)


def _plain(value: Any) -> Any:
    """A prediction cell as a plain Python value (numpy scalars and arrays unwrapped, NaN as null)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class PyfuncScorer:
    """The child's model: loads the pyfunc model once, then turns rows of inputs into rows of outputs."""

    def __init__(self, model_dir: Path, columns: list[str], outputs: list[str], output_columns: dict[str, str]):
        import mlflow.pyfunc  # imported in the model process only: it takes seconds and the pipeline never needs it

        self.model: PyFuncModel = mlflow.pyfunc.load_model(str(model_dir))
        self.columns = columns
        self.outputs = outputs
        self.prediction_columns = [output_columns.get(output, output) for output in outputs]

    def __call__(self, rows: list[list[Any]]) -> list[dict[str, Any]]:
        import pandas as pd

        prediction: Any = self.model.predict(pd.DataFrame(rows, columns=self.columns))
        if isinstance(prediction, pd.DataFrame):
            missing = [column for column in self.prediction_columns if column not in prediction.columns]
            if missing:
                raise ValueError(f"the model's prediction lacks column(s) {', '.join(missing)}")
            table = [[_plain(cell) for cell in row] for row in prediction[self.prediction_columns].itertuples(False)]
        else:
            values = prediction.tolist() if hasattr(prediction, "tolist") else list(prediction)
            if len(self.outputs) == 1:
                table = [[_plain(value)] for value in values]
            else:
                table = [[_plain(cell) for cell in value] for value in values]
        if len(table) != len(rows):
            raise ValueError(f"the model predicted {len(table)} rows for {len(rows)}")
        if any(len(row) != len(self.outputs) for row in table):
            raise ValueError(f"the model's rows do not have {len(self.outputs)} values (one per output field)")
        return [dict(zip(self.outputs, row, strict=True)) for row in table]


class MlflowProvider(LocalModelProvider):
    name = "mlflow"
    config: MlflowConfig

    def __init__(self, config: MlflowConfig) -> None:
        self._model_dir = local_model_dir(config.model_uri)
        super().__init__(config)

    def model_factory(self) -> ModelFactory:
        config = self.config
        return partial(PyfuncScorer, self._model_dir, config.input_fields, config.output_fields, config.output_columns)

    @cached_property
    def model(self) -> str:
        """`mlflow/<directory>@<model_uuid>` from the model's `MLmodel`, so a model saved anew misses the cache."""
        try:
            meta = yaml.safe_load((self._model_dir / "MLmodel").read_text())
        except (OSError, yaml.YAMLError):
            meta = None
        uuid = meta.get("model_uuid") if isinstance(meta, dict) else None
        return f"mlflow/{self._model_dir.name}@{uuid or 'unversioned'}"

    def input_fields(self) -> list[str]:
        return list(self.config.input_fields)

    def output_fields(self) -> list[str]:
        return list(self.config.output_fields)

    async def start(self) -> None:
        if not (self._model_dir / "MLmodel").is_file():
            raise ProviderStartError(
                f"provider {self.name}: no MLflow model at {self._model_dir} (no MLmodel file there)"
            )
        await super().start()

    def payload(self, batch: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
        paths = [fields.split(path) for path in self.config.input_fields]
        return [[fields.get(record, path) for path in paths] for record in batch]

    def outcomes(self, batch: Sequence[Mapping[str, Any]], answer: list[dict[str, Any]]) -> list[EnrichOutcome]:
        return [Enriched(written) for written in answer]


provider_index.register(MlflowProvider.name, MlflowConfig, MlflowProvider)
