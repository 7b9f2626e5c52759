# Source this from the repository root (scripts do it for you): `source env.sh`.
# Thread settings, import path, offline mode, and the Ascend toolkit's environment when it is installed.
_repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="${_repo_root}${PYTHONPATH:+:${PYTHONPATH}}"

# One thread pool per process, sized to the cores we may use; benchmarks and runners pass explicit
# thread counts on top of this.
_cores="$(nproc 2>/dev/null || echo 2)"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${_cores}}"
export MKL_NUM_THREADS="${MKL_NUM_THREADS:-${_cores}}"
export TOKENIZERS_PARALLELISM=false

# Nothing is ever fetched from a model hub: real models come from local paths.
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export HF_DATASETS_OFFLINE=1

# CANN (atc, msame, ais_bench, torch_aie) when installed.
_ascend_env="${ASCEND_TOOLKIT_HOME:-/usr/local/Ascend/ascend-toolkit}/set_env.sh"
if [ -f "${_ascend_env}" ]; then
    # shellcheck disable=SC1090
    source "${_ascend_env}"
    export ASCEND_AVAILABLE=1
fi
unset _repo_root _cores _ascend_env
