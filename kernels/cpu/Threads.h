// How many threads the reference kernels' GEMMs use. Several ranks on one host must share its
// cores: left alone, OpenBLAS gives every process all of them and the ranks fight.
#pragma once

namespace tpc::cpu {

void setKernelThreads(int threads);
// Each of `ranks` processes on this host takes an equal share of its cores (at least one).
void shareKernelThreads(int ranks);
int kernelThreads();

}  // namespace tpc::cpu
