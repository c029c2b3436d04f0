# The MDR pipeline image: `mdr worker`, `mdr produce`, `mdr replay` (Kafka itself runs from apache/kafka).
FROM python:3.11-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY usecases ./usecases
COPY playbooks ./playbooks
COPY samples ./samples
RUN pip install --no-cache-dir .
ENV MDR_KAFKA_BOOTSTRAP=kafka:9092 MDR_METRICS_HOST=0.0.0.0
ENTRYPOINT ["mdr"]
CMD ["worker"]
