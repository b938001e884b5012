#!/usr/bin/env bash
# cibuildwheel's before-all on the manylinux_2_28 images (AlmaLinux 8): install NVIDIA's CUDA
# compiler, the runtime (headers + the static library fastcnn links) and CCCL from NVIDIA's RHEL 8
# repository, so every wheel carries the CUDA module (FASTCNN_CUDA=ON in pyproject.toml's
# [tool.cibuildwheel.linux] environment makes a build without it fail). Runs as root inside the
# container; not runnable on a machine without containers (CONTRIBUTING.md, "Releasing").
#
#   FASTCNN_CIBW_CUDA=13-0 bash tools/cibw_install_cuda.sh     # the CUDA version, dnf spelling
set -euo pipefail
ver="${FASTCNN_CIBW_CUDA:-13-0}"
case "$(uname -m)" in
  x86_64) repo=x86_64 ;;
  aarch64) repo=sbsa ;;
  *) echo "cibw_install_cuda: no CUDA repository for $(uname -m)" >&2; exit 1 ;;
esac
dnf install -y dnf-plugins-core
dnf config-manager --add-repo \
  "https://developer.download.nvidia.com/compute/cuda/repos/rhel8/$repo/cuda-rhel8.repo"
dnf install -y "cuda-nvcc-$ver" "cuda-cudart-devel-$ver" "cuda-cccl-$ver"
dnf clean all
if [[ ! -e /usr/local/cuda ]]; then
  ln -s "/usr/local/cuda-${ver/-/.}" /usr/local/cuda
fi
/usr/local/cuda/bin/nvcc --version
