# syntax=docker/dockerfile:1
# The MDR pipeline image: `mdr worker` by default (also `mdr replay`, `mdr produce`, `mdr report`, ...).
# Kafka itself runs from apache/kafka and the ticket store in PostgreSQL (docker-compose.yml).
#
# Stage 1 builds the virtual environment (compilers for any dependency without a wheel stay here);
# stage 2 is the runtime: the venv, the content (use cases, playbooks, samples, the default noise model),
# a non-root user, volumes for MDR_HOME (imported assets, intel, escort calendars), the ticket store and
# the worker's state, and a healthcheck on the worker's /healthz.

FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
RUN python -m venv /opt/mdr \
 && /opt/mdr/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/mdr/bin/pip install --no-cache-dir .

FROM python:3.11-slim AS runtime
# Pango for the PDF reports (WeasyPrint); nothing else beyond the Python base image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/mdr mdr \
 && mkdir -p /var/lib/mdr/home /var/lib/mdr/store /var/lib/mdr/worker \
 && chown -R mdr:mdr /var/lib/mdr
COPY --from=build /opt/mdr /opt/mdr
WORKDIR /app
COPY usecases ./usecases
COPY playbooks ./playbooks
COPY samples ./samples
COPY models ./models
ENV PATH=/opt/mdr/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MDR_HOME=/var/lib/mdr/home \
    MDR_DB_URL=sqlite:////var/lib/mdr/store/soar.db \
    MDR_USECASES=/app/usecases \
    MDR_PLAYBOOKS=/app/playbooks \
    MDR_SAMPLES=/app/samples \
    MDR_KAFKA_BOOTSTRAP=kafka:9092 \
    MDR_METRICS_HOST=0.0.0.0
VOLUME ["/var/lib/mdr/home", "/var/lib/mdr/store", "/var/lib/mdr/worker"]
USER mdr
EXPOSE 9108
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["mdr"]
CMD ["worker", "--data-dir", "/var/lib/mdr/worker", "--metrics-port", "9108", "--model", "/app/models/noise-default"]
