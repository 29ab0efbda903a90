// PostOperation: how an action queues one operation on its worker strand,
// shared by the actions that run blocking work (CommandAction, MailAction).
// A ban, reban or prolong is queued abandonable: when the daemon stops with
// it still queued (WorkerPool::CancelQueued), it never runs and its report
// says `abandoned`; the ban stays recorded and is applied at the next start.
// Stop, flush, unban and the rest always run. fail2ban has no such notion:
// its stop waits for every queued command.
//
// Called on the loop thread; `run` and `finally` run on a worker, `done` on
// the loop thread.
#ifndef BANTAM_ACTION_QUEUE_H_
#define BANTAM_ACTION_QUEUE_H_

#include <functional>
#include <string>

#include "bantam/action.h"
#include "bantam/worker_pool.h"

namespace bantam {

struct QueuedOperation {
  ActionOp op = ActionOp::kBan;
  std::string jail, action, ip;  // for the abandoned report
  std::function<ActionReport()> run;
  // Runs on the worker after `run`, or in place of it when abandoned
  // (bookkeeping such as a pending count). May be empty.
  std::function<void()> finally;
  std::function<void(ActionReport)> done;  // may be empty
};

void PostOperation(WorkerPool& pool, WorkerPool::StrandId strand, QueuedOperation operation);

}  // namespace bantam

#endif  // BANTAM_ACTION_QUEUE_H_
