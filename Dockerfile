# One image for the API (default CMD), the Temporal worker and the migration job.
FROM python:3.11-slim

# PYTHONPATH: templates/ sits beside the packages, not inside them (core/paths.py),
# so every entry point imports the code from /app rather than from site-packages.
# DEV_MODE off: an image runs as production unless told otherwise, so it refuses to start
# without its own SECRET_KEY (dev mode signs links with a public one, and opens /dev/outbox).
ENV DEV_MODE=false \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONPATH=/app

WORKDIR /app

# Letters are printed in DejaVu Sans (LETTER_FONT_REGULAR / LETTER_FONT_BOLD).
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, from pyproject.toml alone, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
# Installs the project itself and its `journeys` console script.
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build *.egg-info

RUN groupadd --system --gid 10001 journeys \
    && useradd --system --uid 10001 --gid journeys --create-home --shell /usr/sbin/nologin journeys
# The files API and worker share (compose mounts a volume here), writable by the app's user.
RUN mkdir /data && chown journeys:journeys /data
USER journeys

EXPOSE 8000
CMD ["uvicorn", "--factory", "api.main:create_app", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
