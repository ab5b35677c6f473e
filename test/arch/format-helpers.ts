export { highAddressReserved as highAddressReservedForTest } from "../../src/arch/format.js";
export { CPU_MODELS, CpuRole, CpuStateError, cpuModel, eptFormat, x86Format } from "../../src/index.js";
