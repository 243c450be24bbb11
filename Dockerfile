# solarscan container: CPU by default.
#   docker build -t solarscan .
#   docker run --rm -v "$PWD:/work" solarscan score /work/imagery --out /work/panels.geojson
# GPU build: the PyTorch CUDA wheels carry their CUDA libraries, so only the wheel index changes; BASE_IMAGE
# may name any image with Python 3.11 (e.g. a CUDA runtime image with python3.11 installed):
#   docker build --build-arg TORCH_VARIANT=cu130 -t solarscan:cuda .
#   docker run --gpus all --rm solarscan:cuda score ... --device cuda
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG TORCH_VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3.11 -m venv /opt/solarscan
ENV PATH=/opt/solarscan/bin:$PATH
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" torch==2.14.1 torchvision==0.29.1
WORKDIR /src
# The dependencies first, from pyproject.toml alone, so that a change to the code reinstalls only the package.
COPY pyproject.toml README.md constraints.txt ./
RUN python -c "import subprocess, sys, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
subprocess.check_call([sys.executable, '-m', 'pip', 'install', '-c', 'constraints.txt', *deps])"
COPY app ./app
COPY models ./models
COPY pipelines ./pipelines
COPY data_catalog ./data_catalog
RUN pip install --no-deps .

FROM ${BASE_IMAGE} AS runtime
# The encoder is compiled ahead of time with a C++ compiler (kept in ~/.cache/solarscan); without one, scoring
# falls back to the slower eager model.
RUN apt-get update && apt-get install -y --no-install-recommends g++ && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 solarscan \
    && mkdir -p /data && chown solarscan:solarscan /data
COPY --from=build /opt/solarscan /opt/solarscan
ENV PATH=/opt/solarscan/bin:$PATH PYTHONUNBUFFERED=1
USER solarscan
WORKDIR /home/solarscan
EXPOSE 8000
ENTRYPOINT ["solarscan"]
CMD ["--help"]
