# incidentd in a container: slim Python, unprivileged user, store in /data.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY daemon ./daemon
COPY detectors ./detectors
COPY correlation ./correlation
COPY rules ./rules
COPY cmdb ./cmdb
RUN pip install --no-cache-dir . \
    && groupadd --system --gid 10001 incidentd \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --create-home incidentd

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9095

# /healthz answers while the process is alive (urllib: no curl in the slim image)
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9095/healthz', timeout=4).status != 200)"]

ENTRYPOINT ["incidentd"]
CMD ["run", "--listen", "0.0.0.0:9095", "--data-dir", "/data"]
