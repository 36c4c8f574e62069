# crm-hub: slim image, unprivileged user, data in a volume, health checked.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY plugins ./plugins
COPY rules ./rules
RUN pip install --no-cache-dir --prefix=/install '.[fast]'

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin hub \
 && mkdir -p /data /app && chown hub:hub /data
COPY --from=build /install /usr/local
WORKDIR /app
COPY config.example.toml /app/config.example.toml
ENV HUB_CONFIG=/app/config.example.toml \
    HUB__HUB__HOST=0.0.0.0 \
    HUB__STORE__URL=sqlite+aiosqlite:////data/hub.db \
    HUB__HUB__ATTACHMENTS_DIR=/data/attachments \
    HUB__LOG__FORMAT=json \
    PYTHONUNBUFFERED=1
USER hub
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
STOPSIGNAL SIGTERM
CMD ["hub", "run"]
