#include "bantam/action_factory.h"

#include <utility>

#include "bantam/command_action.h"

namespace bantam {

Result<CreatedAction> CreateAction(const std::string& jail, const std::string& name,
                                   OrderedMap<std::string> options, ActionEnv env) {
  CreatedAction out;
  Result<std::unique_ptr<CommandAction>> shell =
      CommandAction::Create(jail, name, std::move(options), env);
  if (!shell.ok()) return shell.status();
  out.action = std::move(*shell);
  return out;
}

}  // namespace bantam
