#include "bantam/action_factory.h"

#include <utility>

#include "bantam/command_action.h"
#include "bantam/mail_action.h"
#include "bantam/nft_action.h"

namespace bantam {

Result<CreatedAction> CreateAction(const std::string& jail, const std::string& name,
                                   OrderedMap<std::string> options, ActionEnv env) {
  CreatedAction out;
  // A stock ban mail: composed here, whois and the mail program run without
  // a shell seeing text from outside.
  {
    std::string reason;
    Result<std::unique_ptr<Action>> mail = MailAction::CreateIfStock(jail, name, options, env, &reason);
    if (!mail.ok()) return mail.status();
    if (*mail) {
      out.action = std::move(*mail);
      return out;
    }
    if (reason.rfind("not a mail action", 0) != 0) out.shell_reason = reason;
  }
  OrderedMap<std::string> kept = options;
  Result<std::unique_ptr<CommandAction>> shell =
      CommandAction::Create(jail, name, std::move(options), env);
  if (!shell.ok()) return shell.status();
  // A stock nftables action: recognised by what its commands do, so the
  // Debian files, ours, and .local overrides of values (port, blocktype ...)
  // all qualify, and a changed command falls back to the shell.
  const bool nft_like = kept.Find("actionban") != nullptr &&
                        kept.Find("actionban")->find("add element") != std::string::npos;
  if (nft_like) {
    std::string reason;
    if (std::optional<NftStockAction> stock = ReadStockNftAction(**shell, &reason)) {
      out.action = std::make_unique<NftAction>(jail, name, std::move(kept), std::move(*stock), env);
      return out;
    }
    out.shell_reason = reason;
  }
  out.action = std::move(*shell);
  return out;
}

}  // namespace bantam
