# expkit on CPU. Build: docker build -t expkit .
# Run (as you, so the runs it writes into the mounted folder are yours): docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/work" expkit
# The build context is what .dockerignore lets through; tests/test_docker_context.py builds the wheel from exactly
# that context and these COPY lines, and scripts/docker_build.sh builds this image and trains in it.
FROM python:3.11.14-slim-bookworm

# GIT_PYTHON_REFRESH: the image has no git; MLflow's GitPython would print a 20-line warning on every run.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    GIT_PYTHON_REFRESH=quiet

# Everything the wheel is built from: pyproject.toml packages expkit/ and hydra_plugins/ (the Optuna sweeper) and
# force-includes conf/ and experiments/targets.yaml.
WORKDIR /tmp/expkit-src
COPY pyproject.toml README.md ./
COPY expkit ./expkit
COPY hydra_plugins ./hydra_plugins
COPY conf ./conf
COPY experiments/targets.yaml ./experiments/targets.yaml
# Installed as root into the image's Python, then the sources go: only the installed package stays.
RUN pip install --no-cache-dir "./[cpu]" \
    && rm -rf /tmp/expkit-src \
    && useradd --create-home --uid 1000 --shell /usr/sbin/nologin expkit \
    && mkdir -p /work/data \
    && chown -R expkit:expkit /work

# Runs, mlflow.db and outputs land in the mounted working folder; put dataset npz files in /work/data.
# Not root: the uid of the `expkit` user made above (numeric, so runAsNonRoot-style checks can verify it).
USER 1000:1000
WORKDIR /work
ENV EXPKIT_DATA_DIR=/work/data
ENTRYPOINT ["expkit"]
CMD ["train"]
