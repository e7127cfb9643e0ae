# Headwater's processes (registry, pipeline workers, connectors) for docker-compose users.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY headwater headwater
COPY streams streams
COPY schemas schemas
COPY quality quality
COPY connectors connectors
COPY examples examples
RUN pip install --no-cache-dir .
ENTRYPOINT ["headwater"]
