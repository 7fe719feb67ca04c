# One image, every role: `llmscope ingest | worker | query | migrate | up`.
FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY llmscope ./llmscope
COPY ingest ./ingest
COPY streams ./streams
COPY query ./query
COPY schemas ./schemas
COPY dashboards ./dashboards
RUN pip install --no-cache-dir . && useradd --system --uid 10001 llmscope
USER llmscope
ENV LLMSCOPE_DATA_DIR=/tmp/llmscope
ENTRYPOINT ["llmscope"]
