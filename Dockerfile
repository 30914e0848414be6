# One image for every mozaiks-bus service: the API (`mozaiks-bus serve`) and the worker
# (`mozaiks-bus worker [APP]`). Build from the repository root:
#   docker build -t mozaiks-bus .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY mozaiks_bus ./mozaiks_bus
COPY worker ./worker
RUN pip install --no-cache-dir ".[amqp]" && useradd --system --uid 10001 mozaiks
USER mozaiks
EXPOSE 8080
# SIGTERM drains in-flight work (bounded) before exiting; give it time to.
STOPSIGNAL SIGTERM
ENTRYPOINT ["mozaiks-bus"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
