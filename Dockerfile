# The platform image: API + gateway (granian) or a job worker, from the same build.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
COPY requirements.lock ./
RUN pip install -r requirements.lock
COPY pyproject.toml README.md alembic.ini ./
COPY marketplace ./marketplace
COPY partners ./partners
COPY oauth ./oauth
COPY webhooks ./webhooks
COPY payouts ./payouts
COPY migrations ./migrations
RUN pip install --no-deps -e .
RUN useradd --create-home --uid 10001 app && chown -R app /app
USER app
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)" || exit 1
CMD ["marketplace", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
