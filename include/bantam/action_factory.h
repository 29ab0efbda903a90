// CreateAction: builds the Action that runs one configured action. The
// stock nftables actions get NftAction (netlink, no fork per ban) and the
// stock ban mails get MailAction (composed without a shell), unless their
// commands were changed or the action says `native = no`; everything else
// gets CommandAction, the generic shell executor.
#ifndef BANTAM_ACTION_FACTORY_H_
#define BANTAM_ACTION_FACTORY_H_

#include <memory>
#include <string>

#include "bantam/action.h"
#include "bantam/ordered_map.h"
#include "bantam/status.h"

namespace bantam {

struct CreatedAction {
  std::unique_ptr<Action> action;
  // Why a stock action that could have run natively runs through the shell
  // ("actionban was changed", "native = no"); empty otherwise. For the log.
  std::string shell_reason;
};

// `options`: the action's options as the configuration stream carries them.
// Error: what CommandAction::Create rejects (bad timeout ...).
Result<CreatedAction> CreateAction(const std::string& jail, const std::string& name,
                                   OrderedMap<std::string> options, ActionEnv env);

}  // namespace bantam

#endif  // BANTAM_ACTION_FACTORY_H_
