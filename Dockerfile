# twenty-pipeline as a batch job: mappings, sources and state on a volume at /data
# (the state in /data/state, so that a nightly run resumes and syncs incrementally),
# the key from a secret file. See the README's "Running it every night".
#   docker build -t twenty-pipeline .
#   docker run --rm -v "$PWD:/data" -e TWENTY_API_URL=https://crm.example.com \
#     -e TWENTY_API_KEY_FILE=/run/secrets/twenty_api_key twenty-pipeline run mappings/job.yaml
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TWENTY_STATE_DIR=/data/state \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
RUN pip install --no-cache-dir . \
    && twenty-pipeline --help > /dev/null \
    && groupadd --gid 10001 pipeline \
    && useradd --create-home --uid 10001 --gid 10001 pipeline \
    && mkdir -p /data \
    && chown 10001:10001 /data

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
ENTRYPOINT ["twenty-pipeline"]
CMD ["--help"]
