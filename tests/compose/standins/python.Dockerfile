# Stand-in for python:3.11-slim where no registry answers (tests only): Debian's Python
# (python3 and its venv module, which deploy/Dockerfile uses), plus the CA certificates
# this machine trusts, so the app image's pip can reach the package index through the
# machine's TLS-inspecting proxy. None of this reaches an image built from the official base.
FROM bb-standin-base:bookworm
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
ENV LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
