# expkit on CPU. Build: docker build -t expkit .   Run: docker run --rm -v "$PWD:/work" expkit
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /opt/expkit
COPY pyproject.toml README.md ./
COPY expkit ./expkit
COPY conf ./conf
RUN pip install ".[cpu]"
# Runs, mlflow.db and outputs land in the mounted working folder; put dataset npz files in /work/data.
WORKDIR /work
ENV EXPKIT_DATA_DIR=/work/data
ENTRYPOINT ["expkit"]
CMD ["train"]
