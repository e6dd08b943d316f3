# Stand-in for redis:7 (tests only): Debian's redis-server, with what the project relies
# on from the official image: redis-server and redis-cli on PATH, /data as the working
# folder and volume, and an entrypoint that gives /data to user redis and drops to it.
FROM bb-standin-base:bookworm
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN mkdir -p /data /usr/local/etc/redis && chown redis:redis /data
VOLUME /data
WORKDIR /data
ENTRYPOINT ["/bin/sh", "/usr/local/bin/docker-entrypoint.sh"]
EXPOSE 6379
CMD ["redis-server"]
