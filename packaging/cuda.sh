# shellcheck shell=bash
# The CUDA half of packaging/install.sh (sourced when CADENCE_GPU=cuda): finds the CUDA toolkit and the GPU's
# architecture, then builds llama-cpp-python's library for that architecture and installs torch with CUDA.
# Environment: CADENCE_CUDA_ARCH (a CMake CUDA architecture such as 120a-real; default: the first GPU's, from
#              nvidia-smi), CADENCE_TORCH_INDEX (the index torch's CUDA wheels come from, default PyTorch's cu130),
#              CUDACXX or nvcc on the PATH, CADENCE_CUDA_NO_VMM=1 where the driver library is missing at build time.

LLAMA_CPP_VERSION=0.3.36   # as pinned in pyproject.toml
TORCH_VERSION=2.13.0
TORCH_INDEX=${CADENCE_TORCH_INDEX:-https://download.pytorch.org/whl/cu130}

# compute capability (nvidia-smi's "12.0") -> the CMake architecture llama.cpp is built for. The targets' own
# feature sets ("a") where llama.cpp uses them: RTX 5090 12.0 -> 120a, DGX Spark (GB10) 12.1 -> 121a; H100 9.0 -> 90.
cuda_arch_for() {
  case "$1" in
    12.0) echo 120a-real ;;
    12.1) echo 121a-real ;;
    *.*) echo "${1%%.*}${1#*.}-real" ;;
    *) return 1 ;;
  esac
}

cuda_fail() {
  printf 'cadence install (CADENCE_GPU=cuda): %s\n  fix: %s\n' "$1" "$2" >&2
  exit 1
}

# Sets NVCC, CUDA_ROOT, CUDA_ARCH, GPU_NAME, CUBLAS_DIR (empty when the toolkit has cuBLAS) and GPU_CMAKE_ARGS.
cuda_plan() {
  NVCC=${CUDACXX:-$(command -v nvcc || true)}
  [[ -z "$NVCC" && -x /usr/local/cuda/bin/nvcc ]] && NVCC=/usr/local/cuda/bin/nvcc
  [[ -n "$NVCC" && -x "$NVCC" ]] || cuda_fail "no CUDA compiler (nvcc) found" \
    "install the CUDA toolkit 12.8 or newer (13 for the DGX Spark), or set CUDACXX=/path/to/nvcc"
  CUDA_ROOT=$(cd "$(dirname "$(readlink -f "$NVCC")")/.." && pwd)  # nvcc may be a link into the toolkit
  GPU_NAME=""
  local cap=""
  if command -v nvidia-smi >/dev/null; then
    GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1 || true)
    cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' ' || true)
  fi
  if [[ -n "${CADENCE_CUDA_ARCH:-}" ]]; then
    CUDA_ARCH=$CADENCE_CUDA_ARCH
  elif [[ -n "$cap" ]]; then
    CUDA_ARCH=$(cuda_arch_for "$cap") || cuda_fail "cannot read the GPU's compute capability ($cap)" \
      "name the architecture: CADENCE_CUDA_ARCH=120a-real (RTX 5090), 121a-real (DGX Spark) or 90-real (H100)"
  else
    cuda_fail "no NVIDIA GPU seen (nvidia-smi) to build for" \
      "install the driver, or name the architecture: CADENCE_CUDA_ARCH=120a-real (RTX 5090), 121a-real (DGX Spark)"
  fi
  CUBLAS_DIR=""
  if ! compgen -G "$CUDA_ROOT/lib64/libcublas.so*" >/dev/null \
     && ! compgen -G "$CUDA_ROOT/targets/*/lib/libcublas.so*" >/dev/null; then
    CUBLAS_DIR=pip  # the toolkit has no cuBLAS: use NVIDIA's nvidia-cublas wheel (resolved in cuda_build)
  fi
  GPU_CMAKE_ARGS="-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH -DCMAKE_CUDA_COMPILER=$NVCC"
  GPU_CMAKE_ARGS+=" -DGGML_NATIVE=OFF -DGGML_CUDA_NCCL=OFF -DLLAVA_BUILD=OFF"
  [[ "${CADENCE_CUDA_NO_VMM:-0}" == 1 ]] && GPU_CMAKE_ARGS+=" -DGGML_CUDA_NO_VMM=ON"
  return 0
}

cuda_describe() {
  printf 'CUDA build plan\n  GPU: %s\n  machine: %s\n  nvcc: %s (%s)\n  llama.cpp architecture: %s\n' \
    "${GPU_NAME:-none seen}" "$(uname -m)" "$NVCC" \
    "$("$NVCC" --version 2>/dev/null | grep -o 'release [0-9.]*' || echo 'version unknown')" "$CUDA_ARCH"
  local cublas="the toolkit's"
  [[ "$CUBLAS_DIR" == pip ]] && cublas="NVIDIA's nvidia-cublas wheel (the toolkit has none)"
  printf '  cuBLAS: %s\n  CMAKE_ARGS: %s\n  torch: %s from %s\n' "$cublas" "$GPU_CMAKE_ARGS" "$TORCH_VERSION" \
    "$TORCH_INDEX"
}

# Runs inside the activated venv: torch with CUDA, then llama-cpp-python built for CUDA_ARCH (never a cached
# CPU wheel), so that the following `pip install -e .` finds both already satisfied.
cuda_build() {
  python -m pip install -q --disable-pip-version-check "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX" \
    --extra-index-url https://pypi.org/simple
  local cmake_args=$GPU_CMAKE_ARGS
  if [[ "$CUBLAS_DIR" == pip ]]; then
    python -m pip install -q --disable-pip-version-check nvidia-cublas
    local nv
    nv=$(python - <<'PY'
import pathlib, nvidia  # the wheel's files: nvidia/cu13/{include/cublas_v2.h,lib/libcublas.so.13}
print(next((str(d) for p in nvidia.__path__ for d in sorted(pathlib.Path(p).iterdir())
            if (d / "include" / "cublas_v2.h").is_file()), ""))
PY
)
    [[ -d "$nv/lib" ]] || cuda_fail "the nvidia-cublas wheel has no library folder" "install the full CUDA toolkit"
    local lib lt
    lib=$(compgen -G "$nv/lib/libcublas.so.*" | head -n1)
    lt=$(compgen -G "$nv/lib/libcublasLt.so.*" | head -n1)
    cmake_args+=" -DCUDA_cublas_LIBRARY=$lib -DCUDA_cublasLt_LIBRARY=$lt -DCMAKE_CUDA_FLAGS=-I$nv/include"
    cmake_args+=" -DCMAKE_CXX_FLAGS=-I$nv/include"
  fi
  printf '\n==> llama-cpp-python %s: building for CUDA %s (10-40 minutes)\n' "$LLAMA_CPP_VERSION" "$CUDA_ARCH"
  CMAKE_ARGS="$cmake_args" python -m pip install -q --disable-pip-version-check --no-cache-dir --force-reinstall \
    --no-deps --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_CPP_VERSION"
  python - <<'PY' || cuda_fail "the built llama.cpp does not offload to the GPU" "read the build log above"
import llama_cpp, sys
sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)
PY
}
