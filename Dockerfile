# Cargohold image: one image for every service in docker-compose.yml (web, worker, beat,
# watcher); the default command is the web server.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CARGOHOLD_VAR_DIR=/app/var \
    BACKUP_ROOT=/var/lib/cargohold/backups

WORKDIR /app

# ssh: the worker's own client for ssh:// hosts (the docker SDK runs `ssh ... docker system dial-stdio`).
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-client \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first (from pyproject.toml, with the postgres extra), so that a code change
# does not reinstall them.
COPY pyproject.toml ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p.get("optional-dependencies", {}).get("postgres", [])))' > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt gunicorn \
    && rm /tmp/requirements.txt

COPY . .
# Editable: the code is imported from /app (templates, static and migrations included),
# never from a second copy in site-packages.
RUN pip install --no-deps -e . \
    && DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput -v0 \
    && useradd --system --user-group --uid 10001 --home-dir /app --shell /usr/sbin/nologin cargohold \
    && mkdir -p /app/var /var/lib/cargohold/backups /var/lib/cargohold/uploads \
    && chown -R cargohold:cargohold /app/var /var/lib/cargohold

USER cargohold
EXPOSE 8000
CMD ["gunicorn", "project.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", "--access-logfile", "-"]
