// NftAction: fail2ban's stock nftables actions (nftables, nftables-allports,
// nftables-multiport, `banaction = nftables[type=...]`) run natively: the
// table, chain, sets and rules the shell action would make are made over
// netlink (NftRuleset), and bans go to the kernel as set elements without a
// fork per address.
//
// The operations submitted in one loop turn are gathered and, at the end of
// the turn (EndTurn), sent as one unit, so a turn's bans and unbans reach the
// kernel as one netlink transaction. Each operation still gets its own
// report; an element the kernel refuses fails only its own operation.
//
// Where the unit runs: a turn of at most kInlineMaxOps bans, rebans,
// prolongs and unbans, while nothing of this action is queued, running or
// waiting to report on its worker strand, is applied on the loop thread
// itself (one netlink round trip for the check, one for the elements: tens
// of microseconds) and reported before EndTurn returns; the strand is held
// meanwhile (WorkerPool::RunIfIdle), so the netlink socket is never used by
// two threads. Everything else goes to the strand as one job, behind what is
// there: start, stop, flush, check, reload, larger turns (a restore slice),
// and a turn that would first have to start a family or repair a set
// someone removed (which puts back every ban held). The result and reports
// are the same either way; only the wake-up of a worker is saved.
//
// Before each transaction that adds elements, the action checks that its set
// and rule are still there (someone may have run `nft flush ruleset`); if
// not, it recreates them and adds back every address it holds. `flush` and
// `stop` remove exactly the elements, rules and sets it made.
//
// With ActionEnv::network_bans (the jail's prefix4/prefix6/aggregate4/
// aggregate6) the sets have flags interval and an id may be a network
// ("2001:db8:1:2::/64"), added and deleted as one interval. The kernel
// refuses overlapping intervals, so the action keeps its elements apart: an
// unban of an address inside a network banned in the same turn goes first,
// whatever the order; an address held while a network covering it is banned
// leaves the set and returns when that network is unbanned. Without
// network_bans a network id fails its operation.
#ifndef BANTAM_NFT_ACTION_H_
#define BANTAM_NFT_ACTION_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "bantam/action.h"
#include "bantam/command_action.h"
#include "bantam/nft_ruleset.h"
#include "bantam/ordered_map.h"

namespace bantam {

// What the native action needs from the action's options, read from the
// expanded shell commands and options of one configured action.
struct NftStockAction {
  NftSpec spec;
  bool start_on_demand = false;
  bool ipv6 = true;  // serves IPv6 too ([Init?family=inet6] and IPv6 allowed)
};

// Reads a stock nftables action out of `shell` (built from the same options,
// not yet used). nullopt with `*reason` when the commands are not the stock
// ones (changed by the operator), the action says `native = no`, or a value
// (blocktype, port, protocol ...) is one the native action does not build:
// the shell action runs instead.
std::optional<NftStockAction> ReadStockNftAction(CommandAction& shell, std::string* reason);

class NftAction final : public Action {
 public:
  // `options`: the action's options, kept for get/set. `env.pool` runs the
  // netlink work.
  NftAction(std::string jail, std::string name, OrderedMap<std::string> options,
            NftStockAction stock, ActionEnv env);
  // Waits for the strand's queued work.
  ~NftAction() override;
  NftAction(const NftAction&) = delete;
  NftAction& operator=(const NftAction&) = delete;

  const std::string& jail() const override { return jail_; }
  const std::string& name() const override { return name_; }
  const char* kind() const override { return "nftables netlink"; }
  bool start_on_demand() const override { return stock_.start_on_demand; }
  bool has_flush() const override { return true; }
  // Options as configured. A set is kept and shown by get, but the native
  // action's behaviour comes from the options it was created with.
  std::optional<std::string> GetProperty(const std::string& key) const override;
  void SetProperty(const std::string& key, const std::string& value) override;
  void Submit(ActionOp op, BanInfo info, std::function<void(ActionReport)> done) override;
  void EndTurn() override;
  bool uses_ban_context() const override { return false; }
  bool may_read_matches(bool) const override { return false; }
  uint64_t ban_epoch() const override { return 0; }

  const NftSpec& spec() const { return stock_.spec; }

  // The most operations a turn may hold to be applied on the loop thread.
  // An element costs ~100 bytes of netlink message and well under a
  // microsecond of kernel work, so 64 keep the loop's stall near one round
  // trip; a restore slice (8192) or a burst of thousands goes to the worker.
  static constexpr size_t kInlineMaxOps = 64;

 private:
  // An operation as the worker needs it: the rest of its BanInfo (matches,
  // captures, context) is dropped at Submit, since no nft message reads it.
  struct Pending {
    ActionOp op;
    std::string ip;
    double time = 0;
    int64_t bantime = 0;
    std::function<void(ActionReport)> done;
  };
  class Worker;  // the strand's side (nft_action.cc)

  // Hands this turn's operations to the strand, or applies them here when
  // `may_inline` and the turn qualifies (see above).
  void SendTurn(bool may_inline);

  const std::string jail_, name_;
  OrderedMap<std::string> options_;  // loop thread only
  const NftStockAction stock_;
  const ActionEnv env_;
  WorkerPool::StrandId strand_ = 0;
  std::vector<Pending> pending_;   // this turn's operations, loop thread only
  std::shared_ptr<Worker> worker_;  // used only on the strand (or as it, RunIfIdle)
  // Turns handed to the strand whose reports have not run yet: loop thread
  // only (shared with the completions, which may outlive the action). A turn
  // is applied inline only at 0, so reports never overtake earlier ones.
  std::shared_ptr<size_t> unreported_ = std::make_shared<size_t>(0);
};

}  // namespace bantam

#endif  // BANTAM_NFT_ACTION_H_
