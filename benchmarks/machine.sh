# Sourced by the benchmark scripts: machine_kind prints the kind of CPU this is, as reports/ folders name it
# (intel-avx512, amd-avx2, arm-aarch64, ...), so each machine kind keeps its own rows.
machine_kind() {
  local isa vendor
  if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then isa=avx512; elif grep -qw avx2 /proc/cpuinfo 2>/dev/null; then isa=avx2; else isa="$(uname -m)"; fi
  vendor="$(grep -m1 -oE 'Intel|AMD|ARM' /proc/cpuinfo 2>/dev/null | tr '[:upper:]' '[:lower:]' || true)"
  echo "${vendor:-cpu}-$isa"
}
