#include "bantam/action_queue.h"

#include <memory>
#include <utility>

namespace bantam {

void PostOperation(WorkerPool& pool, WorkerPool::StrandId strand, QueuedOperation operation) {
  // Shared by the job and its cancel closure: exactly one of them runs.
  auto shared = std::make_shared<QueuedOperation>(std::move(operation));
  auto deliver = [shared](ActionReport report) -> WorkerPool::Completion {
    if (shared->finally) shared->finally();
    if (!shared->done) return nullptr;
    return [shared, report = std::move(report)]() mutable { shared->done(std::move(report)); };
  };
  WorkerPool::Job job = [shared, deliver] { return deliver(shared->run()); };
  WorkerPool::Job cancel;
  const ActionOp op = shared->op;
  if (op == ActionOp::kBan || op == ActionOp::kReban || op == ActionOp::kProlong) {
    cancel = [shared, deliver] {
      ActionReport report;
      report.op = shared->op;
      report.jail = shared->jail;
      report.action = shared->action;
      report.ip = shared->ip;
      report.skipped = true;
      report.abandoned = true;
      return deliver(std::move(report));
    };
  }
  pool.Post(strand, std::move(job), std::move(cancel));
}

}  // namespace bantam
