#include "services/fleet/local_fleet.h"

#include <signal.h>
#include <stdlib.h>

#include <filesystem>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "client/scheduler.h"

namespace attic::fleet {

LocalFleet::LocalFleet(LocalFleetOptions options) : options_(std::move(options)) {}

LocalFleet::~LocalFleet() { Stop(); }

std::string LocalFleet::scheduler_address() const {
  return scheduler_ ? scheduler_->control_address() : std::string();
}

Status LocalFleet::Start(std::chrono::milliseconds timeout) {
  if (scheduler_) return FailedPreconditionError("the local fleet is already started");
  if (options_.workers < 1 || options_.workers > 64) {
    return InvalidArgumentError("local fleet: workers = " + std::to_string(options_.workers) +
                                ": must be in [1, 64]");
  }
  if (options_.base_port != 0 && options_.base_port + 2 * options_.workers + 1 > 65535) {
    return InvalidArgumentError("local fleet: base port " + std::to_string(options_.base_port) +
                                " leaves no room for " + std::to_string(options_.workers) +
                                " workers");
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  dir_ = options_.dir;
  std::error_code ec;
  if (dir_.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "attic-fleet-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return InternalError("cannot create a temp folder");
    dir_ = tmpl;
    own_dir_ = !options_.keep_dir;
  } else {
    std::filesystem::create_directories(dir_, ec);
    if (ec) return InternalError("cannot create " + dir_ + ": " + ec.message());
  }
  const std::string scheduler_binary = options_.scheduler_binary.empty()
                                           ? loadgen::SiblingBinary("attic-scheduler")
                                           : options_.scheduler_binary;
  const std::string worker_binary = options_.worker_binary.empty()
                                        ? loadgen::SiblingBinary("attic-worker")
                                        : options_.worker_binary;
  const uint16_t base = options_.base_port;

  std::vector<std::string> scheduler_args = {"--listen-address", "127.0.0.1", "--port",
                                             std::to_string(base)};
  scheduler_args.insert(scheduler_args.end(), options_.scheduler_args.begin(),
                        options_.scheduler_args.end());
  scheduler_ = std::make_unique<loadgen::WorkerProcess>(
      loadgen::WorkerProcessOptions{.binary = scheduler_binary,
                                    .args = std::move(scheduler_args),
                                    .name = "scheduler",
                                    .control_port = base,
                                    .plain_daemon = true,
                                    .dir = dir_});
  auto left = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max(deadline - std::chrono::steady_clock::now(),
                 std::chrono::steady_clock::duration::zero()));
  };
  if (Status s = scheduler_->Start(left()); !s.ok()) {
    Stop();
    return s.WithContext("local fleet: attic-scheduler");
  }
  for (int i = 0; i < options_.workers; ++i) {
    const std::string name = "worker-" + std::to_string(i);
    const std::string wdir = dir_ + "/" + name;
    std::vector<std::string> args = {"--scheduler-address", scheduler_address()};
    if (!options_.dram_only) args.insert(args.end(), {"--data-dir", wdir + "/data"});
    args.insert(args.end(), options_.worker_args.begin(), options_.worker_args.end());
    const uint16_t data_port = base == 0 ? 0 : static_cast<uint16_t>(base + 1 + 2 * i);
    const uint16_t control_port = base == 0 ? 0 : static_cast<uint16_t>(base + 2 + 2 * i);
    workers_.push_back(std::make_unique<loadgen::WorkerProcess>(
        loadgen::WorkerProcessOptions{.binary = worker_binary,
                                      .args = std::move(args),
                                      .name = name,
                                      .data_port = data_port,
                                      .control_port = control_port,
                                      .dir = wdir}));
  }
  // Workers start side by side (each opens its pools and SSD tier), then report ready.
  for (size_t i = 0; i < workers_.size(); ++i) {
    if (Status s = workers_[i]->Start(left()); !s.ok()) {
      Stop();
      return s.WithContext("local fleet: " + workers_[i]->name());
    }
    addresses_.push_back({.name = workers_[i]->name(),
                          .data = workers_[i]->data_address(),
                          .control = workers_[i]->control_address(),
                          .metrics = "http://" + workers_[i]->control_address() + "/metrics",
                          .dir = dir_ + "/" + workers_[i]->name() + "/data"});
    if (options_.dram_only) addresses_.back().dir.clear();
  }
  if (Status s = WaitRegistered(deadline); !s.ok()) {
    Stop();
    return s;
  }
  return OkStatus();
}

Status LocalFleet::WaitRegistered(std::chrono::steady_clock::time_point deadline) {
  std::string last = "no answer yet";
  while (std::chrono::steady_clock::now() < deadline) {
    StatusOr<std::vector<FleetWorker>> fleet =
        GetFleet(scheduler_address(), std::chrono::milliseconds(1000));
    if (fleet.ok()) {
      size_t ready = 0;
      for (const FleetWorkerAddresses& a : addresses_) {
        for (const FleetWorker& w : *fleet) {
          if (w.data_address == a.data && w.alive && w.ready) ++ready;
        }
      }
      if (ready == addresses_.size()) return OkStatus();
      last = std::to_string(ready) + " of " + std::to_string(addresses_.size()) +
             " workers registered and ready";
    } else {
      last = fleet.status().ToString();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return UnavailableError("local fleet: the workers did not all register with the scheduler in "
                          "time (" + last + "); logs in " + dir_);
}

void LocalFleet::Stop(std::chrono::milliseconds grace) {
  // Workers first: a scheduler that stops first would see them as dead for nothing.
  for (auto& w : workers_) {
    if (w->running()) w->Kill(SIGTERM, grace).status().IgnoreError();
  }
  if (scheduler_ && scheduler_->running()) {
    scheduler_->Kill(SIGTERM, grace).status().IgnoreError();
  }
  workers_.clear();
  scheduler_.reset();
  if (own_dir_ && !dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    own_dir_ = false;
  }
}

std::string LocalFleet::StateJson() const {
  nlohmann::ordered_json j;
  j["scheduler"] = scheduler_address();
  j["workers"] = nlohmann::ordered_json::array();
  for (const FleetWorkerAddresses& a : addresses_) {
    j["workers"].push_back({{"name", a.name},
                            {"data", a.data},
                            {"control", a.control},
                            {"metrics", a.metrics},
                            {"dir", a.dir}});
  }
  return j.dump(2) + "\n";
}

}  // namespace attic::fleet
