# The collector in a container: docker build -t anonstats . && docker run -p 9470:9470 anonstats
# (compose.yaml runs it with a volume and, as an option, ClickHouse).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p anonstats

FROM debian:bookworm-slim
# The service's own user; the data dir is its alone (0700), as install-collector.sh makes it.
RUN useradd --system --user-group --home-dir /var/lib/anonstats --shell /usr/sbin/nologin anonstats \
    && install -d -m 0700 -o anonstats -g anonstats /var/lib/anonstats
COPY --from=build /src/target/release/anonstats /usr/local/bin/anonstats
USER anonstats
ENV ANONSTATS_DATA_DIR=/var/lib/anonstats \
    ANONSTATS_LISTEN=0.0.0.0:9470
VOLUME /var/lib/anonstats
EXPOSE 9470
# /healthz over bash's /dev/tcp: the slim image has no curl. With --base-path, add it here.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9470 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/anonstats"]
CMD ["serve"]
