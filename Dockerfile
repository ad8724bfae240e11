# The project image every pipeline step runs in; `cpfd pipeline compile` names it cpfd:<version>
# (components/image.py reads the version from the installed package: one place, pyproject.toml).
#
#   make image                                   # = docker build --target cpu  -t cpfd:<version> .
#   docker build --target cuda -t cpfd:<version>-cuda .   # GPU node pools (pass --image to compile)
#
# Two stages: `wheel` builds the project wheel (the only stage with build tools), `cpu` / `cuda`
# install it with the platform extras onto a slim Python, as a non-root user, at the tested versions
# (constraints.txt; pyproject.toml declares ranges). Nothing is installed at run time: pip is pointed
# at no index in the final image.
ARG PYTHON=3.11
ARG VERSION=0.1.0

FROM python:${PYTHON}-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
# cpfd/ links to the deployables' folders (cpfd/serving -> ../serving, ...): they are copied beside it
COPY cpfd cpfd
COPY components components
COPY pipelines pipelines
COPY feature_repo feature_repo
COPY serving serving
COPY monitoring monitoring
COPY benchmarks benchmarks
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:${PYTHON}-slim AS base
ARG VERSION
LABEL org.opencontainers.image.title="cpfd" org.opencontainers.image.version="${VERSION}"
RUN useradd --create-home --uid 10001 cpfd
ENV BENTOML_DO_NOT_TRACK=True HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

# CPU nodes: PyTorch's CPU build.
FROM base AS cpu
ARG VERSION
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY --from=wheel /wheels /wheels
COPY constraints.txt /wheels/
# project install (tests/integration/test_image.py runs this line in a fresh virtual environment)
RUN pip install --no-cache-dir -c /wheels/constraints.txt "/wheels/cpfd-${VERSION}-py3-none-any.whl[platform]" && rm -rf /wheels
ENV PIP_NO_INDEX=1
USER cpfd
WORKDIR /home/cpfd

# GPU nodes: PyPI's torch build bundles the CUDA runtime (the node provides the driver).
FROM base AS cuda
ARG VERSION
RUN pip install --no-cache-dir torch==2.13.0
COPY --from=wheel /wheels /wheels
COPY constraints.txt /wheels/
# project install (tests/integration/test_image.py runs this line in a fresh virtual environment)
RUN pip install --no-cache-dir -c /wheels/constraints.txt "/wheels/cpfd-${VERSION}-py3-none-any.whl[platform]" && rm -rf /wheels
ENV PIP_NO_INDEX=1 NVIDIA_VISIBLE_DEVICES=all
USER cpfd
WORKDIR /home/cpfd
