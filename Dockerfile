# The AOS image: `aos api`, `aos worker`, `aos beat`, `aos flower`, `aos db upgrade` (docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY . .
# The package carries its migrations (aos.migrations), so the installed `aos db upgrade` needs no source tree.
RUN pip install --no-cache-dir . \
    && useradd --system --create-home --home-dir /home/aos --uid 10001 --user-group aos \
    && mkdir -p /var/lib/aos \
    && chown aos:aos /var/lib/aos
# Where beat keeps its schedule file and the processes their metrics files: writable by the aos user.
ENV AOS_DATA_DIR=/var/lib/aos
# Not root: a process that serves HTTP and runs plan steps (HTTP calls, LLM output) must not own the container.
USER aos:aos
CMD ["aos", "--help"]
