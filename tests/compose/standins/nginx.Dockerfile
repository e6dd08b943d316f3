# Stand-in for nginx:1.27 (tests only): Debian's nginx 1.22 and curl (the official image
# has both), with the official image's `nginx` user, stop signal and command.
FROM bb-standin-base:bookworm
RUN useradd --system --no-create-home --shell /usr/sbin/nologin nginx \
    && rm -f /etc/nginx/sites-enabled/default
STOPSIGNAL SIGQUIT
EXPOSE 80
CMD ["nginx", "-g", "daemon off;"]
