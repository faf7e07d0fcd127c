# The pgrecall image used by docker-compose.yml.
FROM python:3.11-slim
RUN useradd --create-home pgrecall
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY src ./src
COPY migrations ./migrations
RUN pip install --no-cache-dir .
USER pgrecall
ENTRYPOINT []
CMD ["pgrecall", "--help"]
