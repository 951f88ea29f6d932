#!/bin/sh
# One install step for every image: a virtualenv at $UV_PROJECT_ENVIRONMENT with exactly the
# versions uv.lock pins, for one set of extras, with a CUDA or a CPU torch.
#
#   install-venv.sh cuda mlserver     the lock as it is: PyPI's torch, which on Linux is the CUDA
#                                     build and pulls the NVIDIA runtime wheels (cuBLAS, cuDNN, ...)
#   install-venv.sh cpu mlserver      the same versions, but torch and torchvision come from
#                                     $TORCH_CPU_INDEX (the PyTorch CPU wheels, `+cpu` builds of the
#                                     locked versions) and no NVIDIA/CUDA/Triton wheel is installed
#   install-venv.sh none operator     no torch at all (a torch-free extra or package)
#
# Further arguments are extras; `--package NAME` installs a workspace member instead of the
# root project. Run in the build stage from the project root (pyproject.toml, uv.lock, src/).
set -eu

torch=$1
shift
selection=""
for arg in "$@"; do
    case $arg in
        --package=*) selection="$selection $arg" ;;
        *) selection="$selection --extra $arg" ;;
    esac
done

# shellcheck disable=SC2086 # $selection is a list of flags
case $torch in
    cuda | none)
        uv sync --frozen --no-dev --no-editable $selection
        ;;
    cpu)
        # Everything the lock pins except torch, torchvision and the CUDA stack (hashes checked),
        # then the locked torch/torchvision versions from the CPU index: `==2.x.y` matches the
        # index's `2.x.y+cpu` build of the same release.
        uv export --frozen --no-dev --no-emit-workspace --no-hashes --no-annotate --no-header \
            $selection >/tmp/locked.txt
        skip=$(sed -nE 's/^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==.*/--no-install-package \1/p' /tmp/locked.txt)
        uv sync --frozen --no-dev --no-editable $selection $skip
        grep -E '^(torch|torchvision)==' /tmp/locked.txt | cut -d' ' -f1 >/tmp/torch.txt
        uv pip install --python "$UV_PROJECT_ENVIRONMENT" --no-deps \
            --index-url "${TORCH_CPU_INDEX:?}" -r /tmp/torch.txt
        rm -f /tmp/locked.txt /tmp/torch.txt
        ;;
    *)
        echo "install-venv.sh: first argument is cuda, cpu or none, not '$torch'" >&2
        exit 2
        ;;
esac
