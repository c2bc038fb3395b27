# One image for the three compose services (precompute, backend, ui).
#
#   docker build -t pss .                                  CPU build (torch from the CPU wheel index; small)
#   docker build -t pss:cuda --build-arg TORCH_VARIANT=cuda .
#                                                          CUDA build (torch's PyPI wheels bundle the CUDA
#                                                          runtime; the host needs only the NVIDIA driver and
#                                                          the NVIDIA container toolkit)
#
# The install steps are the ones scripts/setup.sh runs (same Debian dataset package, requirements.lock, then
# this package), minus the browser; tests/test_deploy.py checks that they stay the same.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# cpu: the CPU-only torch wheels; cuda: the default PyPI wheels, which carry the CUDA libraries.
ARG TORCH_VARIANT=cpu

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PSS_CACHE_DIR=/cache/pss \
    TORCH_HOME=/cache/torch

# Fashion-MNIST from Debian (/usr/share/datasets/fashion-mnist): the demo never downloads anything.
# gcc + libc headers: the engine's and the exact search's C kernels are compiled on first use (else torch/float32).
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dataset-fashion-mnist gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/pss
COPY requirements.lock pyproject.toml README.md ./
# Exactly requirements.lock, with its hashes (scripts/setup.sh installs the same file). The cuda variant takes
# it whole (PyPI's torch wheels carry the CUDA libraries); the cpu variant takes torch/torchvision at the same
# versions from the CPU wheel index and leaves out the CUDA packages.
RUN case "$TORCH_VARIANT" in \
        cpu) python3 -m pip install -q --index-url https://download.pytorch.org/whl/cpu \
                 "torch==$(sed -n 's/^torch==\([^ ]*\) .*/\1/p' requirements.lock)" \
                 "torchvision==$(sed -n 's/^torchvision==\([^ ]*\) .*/\1/p' requirements.lock)" \
             && awk '/^[a-z]/ { skip = ($0 ~ /^(torch|torchvision|triton|nvidia-[a-z0-9-]+)==/) } !skip' \
                 requirements.lock >/tmp/requirements.txt ;; \
        cuda) cp requirements.lock /tmp/requirements.txt ;; \
        *) echo "TORCH_VARIANT must be cpu or cuda, got $TORCH_VARIANT" >&2; exit 1 ;; \
    esac \
    && python3 -m pip install -q --require-hashes --no-deps -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY backend backend
COPY app app
COPY precompute precompute
COPY frontend_assets frontend_assets
# Editable, as scripts/setup.sh does: the dashboard finds frontend_assets/ beside app/.
RUN python3 -m pip install -q --no-deps --no-build-isolation -e .

# Never root at run time. /artifacts and /cache are named volumes in docker-compose.yml; a fresh named
# volume takes the ownership of the directory it is mounted over, so they are created here for this user.
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin pss \
    && mkdir -p /artifacts /cache/pss /cache/torch \
    && chown -R pss:pss /artifacts /cache
USER pss
WORKDIR /home/pss

EXPOSE 8000 8050
CMD ["pss", "--help"]
