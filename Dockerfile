# ml-connector container image.
#
#   build:  buildah bud -t ml-connector .      (or docker build)
#   run:    docker run -p 8080:8080 -v mlc-queue:/var/lib/ml-connector \
#             -e MLC_SAP_PASSWORD=... -e MLC_DATAVERSE_SECRET=... \
#             -e MLC_DATAVERSE_URL=https://org.crm.dynamics.com \
#             -e MLC_TENANT_ID=... -e MLC_CLIENT_ID=... ml-connector
#
# The baked config (/etc/ml-connector/config.json) takes everything
# site-specific from those variables; mount your own file over it to change
# anything else. The queue lives on the volume: losing it loses IDocs that
# were acknowledged to SAP but not yet delivered.

FROM debian:bookworm-slim AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      build-essential pkg-config libmicrohttpd-dev libxml2-dev libcurl4-openssl-dev \
      libcjson-dev liblmdb-dev zlib1g-dev libssl-dev libgnutls28-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make MLC_SKIP_DEPS=1 build/ml-connector && strip build/ml-connector

FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libmicrohttpd12 libxml2 libcurl4 libcjson1 liblmdb0 zlib1g libssl3 libgnutls30 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/ml-connector --shell /usr/sbin/nologin mlc \
 && mkdir -p /var/lib/ml-connector /etc/ml-connector \
 && chown mlc:mlc /var/lib/ml-connector && chmod 0700 /var/lib/ml-connector
COPY --from=build /src/build/ml-connector /usr/local/bin/ml-connector
COPY config/ml-connector.container.json /etc/ml-connector/config.json
COPY config/mapping.json /etc/ml-connector/mapping.json
USER 10001:10001
VOLUME ["/var/lib/ml-connector"]
EXPOSE 8080
ENV MLC_CONFIG=/etc/ml-connector/config.json
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/ml-connector"]
CMD ["serve", "-c", "/etc/ml-connector/config.json"]
