// The device model on the host executor (cuda/exec_host.hpp): the device
// model's code, run on the CPU so that the tests can check it against the
// CPU's model where there is no GPU. Built with the CUDA backend.
#define PCR_ISA_NS dev_host
#include "device_model.hpp"

#include "device_api.hpp"
#include "exec_host.hpp"

namespace pcr {

template <typename T>
std::unique_ptr<DeviceModelAPI<T>> make_host_device_model(CellKind cell, idx V, idx E, idx H,
                                                          idx L, const Dropouts& drop,
                                                          const std::vector<idx>& offsets) {
  using Exec = dev_exec::HostExec;
  using M = dev_host::dev::DeviceModel<T, Exec>;
  return std::make_unique<DeviceModelImpl<T, M, Exec>>(cell, V, E, H, L, drop, offsets);
}

template std::unique_ptr<DeviceModelAPI<float>> make_host_device_model<float>(
    CellKind, idx, idx, idx, idx, const Dropouts&, const std::vector<idx>&);
template std::unique_ptr<DeviceModelAPI<double>> make_host_device_model<double>(
    CellKind, idx, idx, idx, idx, const Dropouts&, const std::vector<idx>&);

}  // namespace pcr
