"""Fast checks of llama.cpp loading choices that need no model: when weight repacking is on."""
from __future__ import annotations

from engines.llama_loader import repack_by_default

AMD = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni avx512_bf16\n"
INTEL_AMX = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8\n"


def test_repacking_is_on_except_on_amx_cpus(tmp_path):
    (tmp_path / "amd").write_text(AMD)
    (tmp_path / "intel").write_text(INTEL_AMX)
    assert repack_by_default(tmp_path / "amd")
    assert not repack_by_default(tmp_path / "intel")  # llama.cpp's AMX buffer type crashed batched decodes
    assert repack_by_default(tmp_path / "no-cpuinfo")  # not Linux: no AMX machine to avoid
