# A Radix node image: `docker build -t radix .`
FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY radix ./radix
RUN pip install --no-cache-dir . && useradd --uid 1000 --create-home radix
USER radix
# SIGTERM drains the node: its aggregates are handed to the other nodes before it exits.
STOPSIGNAL SIGTERM
CMD ["radix", "--help"]
