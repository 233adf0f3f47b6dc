# A CPU image of `fvdeploy serve` (docs/serve.md#docker). Not built in CI.
#   docker build -t fvdeploy .
#   docker run -p 8080:8080 -e FVDEPLOY_TOKEN=change-me -v /videos:/videos:ro fvdeploy \
#          fvdeploy serve --host 0.0.0.0 --allow-root /videos
# A non-loopback bind needs a token (FVDEPLOY_TOKEN): the server refuses to start without one.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 OMP_WAIT_POLICY=PASSIVE

# PyTorch's CPU-only wheels (the default ones carry CUDA, gigabytes this image does not use):
# pass PyTorch's CPU wheel index as TORCH_INDEX_URL (--build-arg); empty: the default wheels.
ARG TORCH_INDEX_URL=
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" "torch>=2.11" "torchvision>=0.26"; \
    else \
        pip install "torch>=2.11" "torchvision>=0.26"; \
    fi

RUN useradd --create-home --uid 10001 fvdeploy
WORKDIR /opt/fvdeploy
COPY pyproject.toml README.md ./
COPY fvdeploy ./fvdeploy
COPY training ./training
COPY export ./export
RUN pip install ".[serve]"

USER fvdeploy
WORKDIR /home/fvdeploy
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"
CMD ["fvdeploy", "serve", "--host", "0.0.0.0", "--port", "8080"]
